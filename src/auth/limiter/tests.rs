use super::*;

const WINDOW: Duration = Duration::from_secs(300);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` wrong passwords for `account` from `source`, all at `at`.
fn fail(limiter: &LoginLimiter, account: &str, source: &str, n: u32, at: Instant) {
    for i in 0..n {
        limiter
            .begin_at(account, ip(source), at)
            .unwrap_or_else(|wait| panic!("failure {i} refused for {wait:?}"))
            .failed();
    }
}

#[test]
fn a_guesser_backs_off_while_the_owner_elsewhere_gets_in() {
    let limiter = LoginLimiter::new(3, 100, WINDOW);
    let t0 = Instant::now();
    fail(&limiter, "admin", "203.0.113.9", 3, t0);
    // The guesser waits 5 s, then 10 s, then 20 s…
    assert_eq!(
        limiter.check_at("admin", ip("203.0.113.9"), t0),
        Err(secs(5))
    );
    let mut at = t0;
    for expected in [5, 10, 20, 40, 80] {
        at += secs(expected);
        assert!(limiter.check_at("admin", ip("203.0.113.9"), at).is_ok());
        limiter
            .begin_at("admin", ip("203.0.113.9"), at)
            .unwrap()
            .failed();
        let wait = limiter
            .check_at("admin", ip("203.0.113.9"), at)
            .unwrap_err();
        assert_eq!(wait, secs(expected * 2), "after the wait of {expected} s");
    }
    // …at most the window, however long it keeps trying at once.
    for _ in 0..20 {
        at += limiter
            .check_at("admin", ip("203.0.113.9"), at)
            .unwrap_err();
        limiter
            .begin_at("admin", ip("203.0.113.9"), at)
            .unwrap()
            .failed();
    }
    assert_eq!(
        limiter.check_at("admin", ip("203.0.113.9"), at),
        Err(WINDOW)
    );
    // The owner, from any other address, is never held up.
    assert!(limiter.check_at("admin", ip("198.51.100.1"), at).is_ok());
    limiter
        .begin_at("admin", ip("198.51.100.1"), at)
        .unwrap()
        .succeeded();
    // A quiet window after the back-off forgets the guesser's failures.
    let quiet = at + WINDOW * 2;
    assert!(limiter.check_at("admin", ip("203.0.113.9"), quiet).is_ok());
    fail(&limiter, "admin", "203.0.113.9", 3, quiet);
}

#[test]
fn concurrent_guesses_cannot_race_past_the_limit() {
    let limiter = std::sync::Arc::new(LoginLimiter::new(10, 1_000, WINDOW));
    let admitted = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..42 {
            scope.spawn(|| {
                // The attempts start together and all fail afterwards.
                if let Ok(attempt) = limiter.begin("victim", ip("10.0.0.1")) {
                    admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    attempt.failed();
                }
            });
        }
    });
    assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 10);
}

#[test]
fn the_right_password_refunds_its_attempt() {
    let limiter = LoginLimiter::new(2, 100, WINDOW);
    let t0 = Instant::now();
    for _ in 0..10 {
        limiter
            .begin_at("ci", ip("10.0.0.7"), t0)
            .unwrap()
            .succeeded();
    }
    fail(&limiter, "ci", "10.0.0.7", 2, t0);
    assert!(limiter.check_at("ci", ip("10.0.0.7"), t0).is_err());
    // A check that never ran (busy server) is not held against anyone.
    let limiter = LoginLimiter::new(2, 100, WINDOW);
    for _ in 0..10 {
        limiter.begin_at("ci", ip("10.0.0.7"), t0).unwrap().cancel();
    }
    fail(&limiter, "ci", "10.0.0.7", 2, t0);
}

#[test]
fn an_address_guessing_many_accounts_backs_off_but_not_its_known_owners() {
    let limiter = LoginLimiter::new(10, 3, WINDOW);
    let t0 = Instant::now();
    // Someone behind the NAT logged in before.
    limiter
        .begin_at("builder", ip("192.0.2.7"), t0)
        .unwrap()
        .succeeded();
    for account in ["a", "b", "c"] {
        fail(&limiter, account, "192.0.2.7", 1, t0);
    }
    assert_eq!(limiter.check_at("d", ip("192.0.2.7"), t0), Err(secs(5)));
    assert!(limiter.check_at("d", ip("192.0.2.8"), t0).is_ok());
    // The known owner from that address still gets in.
    limiter
        .begin_at("builder", ip("192.0.2.7"), t0)
        .unwrap()
        .succeeded();
}

#[test]
fn failures_age_out_with_the_real_clock() {
    let limiter = LoginLimiter::new(2, 100, Duration::from_millis(200));
    for _ in 0..2 {
        limiter.begin("alice", ip("10.0.0.1")).unwrap().failed();
    }
    let wait = limiter.check("alice", ip("10.0.0.1")).unwrap_err();
    assert!(wait >= Duration::from_secs(1), "rounded up: {wait:?}");
    std::thread::sleep(Duration::from_millis(250));
    assert!(limiter.check("alice", ip("10.0.0.1")).is_ok());
}

#[test]
fn an_ipv6_slash_64_counts_as_one_source() {
    let limiter = LoginLimiter::new(10, 2, WINDOW);
    let t0 = Instant::now();
    fail(&limiter, "a", "2001:db8:1:2::1", 1, t0);
    fail(&limiter, "b", "2001:db8:1:2:ffff::9", 1, t0);
    assert!(limiter.check_at("c", ip("2001:db8:1:2::42"), t0).is_err());
    assert!(limiter.check_at("c", ip("2001:db8:1:3::1"), t0).is_ok());
    // IPv4-mapped IPv6 is the IPv4 address.
    fail(&limiter, "a", "::ffff:198.51.100.1", 1, t0);
    fail(&limiter, "b", "198.51.100.1", 1, t0);
    assert!(limiter.check_at("c", ip("198.51.100.1"), t0).is_err());
}

#[test]
fn memory_stays_bounded_and_recent_offenders_are_kept() {
    let limiter = LoginLimiter::with_capacity(3, 3, WINDOW, 100);
    let t0 = Instant::now();
    fail(&limiter, "target", "10.9.9.9", 3, t0);
    for i in 0..2_000u32 {
        let at = t0 + Duration::from_millis(u64::from(i));
        let _ = limiter
            .begin_at(&format!("user{i}"), IpAddr::from(i.to_be_bytes()), at)
            .map(Attempt::failed);
        // The attacker keeps trying the target too.
        if i % 10 == 0 {
            let _ = limiter
                .begin_at("target", ip("10.9.9.9"), at)
                .map(Attempt::failed);
        }
        assert!(limiter.tracked() <= 100);
    }
    let later = t0 + Duration::from_secs(2);
    assert!(limiter.check_at("target", ip("10.9.9.9"), later).is_err());
    assert!(limiter.check_at("someone", ip("10.9.9.9"), later).is_err());
}

#[test]
fn expired_entries_are_dropped_when_room_is_needed() {
    let limiter = LoginLimiter::with_capacity(3, 3, Duration::from_secs(1), 10);
    let t0 = Instant::now();
    for i in 0..5u32 {
        let source = IpAddr::from(i.to_be_bytes()).to_string();
        fail(&limiter, &format!("old{i}"), &source, 1, t0);
    }
    assert_eq!(limiter.tracked(), 10);
    fail(&limiter, "new", "10.0.0.1", 1, t0 + Duration::from_secs(5));
    assert_eq!(limiter.tracked(), 2);
}

#[test]
fn zero_max_failures_turns_limiting_off() {
    let limiter = LoginLimiter::new(0, 0, WINDOW);
    for _ in 0..10 {
        limiter.begin("alice", ip("10.0.0.1")).unwrap().failed();
    }
    assert!(limiter.check("alice", ip("10.0.0.1")).is_ok());
}
