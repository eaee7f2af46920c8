//! The audit log's part of the access suite (the `AuditLog` role alone).

use super::*;

pub async fn run(m: &dyn AuditLog) {
    audit_filters(m).await;
    audit_pages(m).await;
    audit_prune(m).await;
}

pub(super) const T0: i64 = 1_000_000;

/// Ten events, `at` = T0, T0+100, … T0+900: actors alternate, actions cycle
/// pull/push/delete, the first five are on `audit/app`, the rest on
/// `audit/db`, and the eighth failed.
fn event(i: i64) -> NewAuditEvent {
    NewAuditEvent {
        at: T0 + i * 100,
        actor: if i % 2 == 0 { "auditor-a" } else { "auditor-b" }.into(),
        source: Some(format!("10.0.0.{i}")),
        action: ["pull", "push", "delete"][i as usize % 3].into(),
        repository: Some(if i < 5 { "audit/app" } else { "audit/db" }.into()),
        digest: Some(format!("sha256:{i:064}")),
        detail: Some(format!("event {i}")),
        success: i != 7,
    }
}

/// Which of the ten events a query returned, by their `at`.
fn indices(events: &[AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| (e.at - T0) / 100).collect()
}

fn filter() -> AuditFilter {
    AuditFilter {
        since: Some(T0),
        until: Some(T0 + 1000),
        ..AuditFilter::default()
    }
}

async fn audit_filters(m: &dyn AuditLog) {
    for i in 0..10 {
        m.record(&[event(i)]).await.unwrap();
    }
    let all = m.query(&filter()).await.unwrap();
    assert_eq!(indices(&all), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let seventh = all.iter().find(|e| e.at == T0 + 700).unwrap();
    let expected = event(7);
    assert_eq!(
        seventh,
        &AuditEvent {
            id: seventh.id,
            at: expected.at,
            actor: expected.actor,
            source: expected.source,
            action: expected.action,
            repository: expected.repository,
            digest: expected.digest,
            detail: expected.detail,
            success: false,
        }
    );

    let by_actor = AuditFilter {
        actor: Some("auditor-a".into()),
        ..filter()
    };
    assert_eq!(indices(&m.query(&by_actor).await.unwrap()), [8, 6, 4, 2, 0]);
    let by_action = AuditFilter {
        action: Some("push".into()),
        ..filter()
    };
    assert_eq!(indices(&m.query(&by_action).await.unwrap()), [7, 4, 1]);
    let by_repository = AuditFilter {
        repository: Some("audit/db".into()),
        ..filter()
    };
    assert_eq!(
        indices(&m.query(&by_repository).await.unwrap()),
        [9, 8, 7, 6, 5]
    );
    let combined = AuditFilter {
        actor: Some("auditor-b".into()),
        repository: Some("audit/app".into()),
        ..filter()
    };
    assert_eq!(indices(&m.query(&combined).await.unwrap()), [3, 1]);
    // `since` is inclusive, `until` exclusive.
    let window = AuditFilter {
        since: Some(T0 + 300),
        until: Some(T0 + 600),
        ..AuditFilter::default()
    };
    assert_eq!(indices(&m.query(&window).await.unwrap()), [5, 4, 3]);
    let nobody = AuditFilter {
        actor: Some("auditor-z".into()),
        ..filter()
    };
    assert!(m.query(&nobody).await.unwrap().is_empty());
    let limited = AuditFilter {
        limit: 2,
        ..by_actor
    };
    assert_eq!(indices(&m.query(&limited).await.unwrap()), [8, 6]);

    // Optional fields may be absent.
    let bare = NewAuditEvent {
        at: T0 + 5000,
        actor: "anonymous".into(),
        source: None,
        action: "login".into(),
        repository: None,
        digest: None,
        detail: None,
        success: false,
    };
    m.record(std::slice::from_ref(&bare)).await.unwrap();
    let found = m
        .query(&AuditFilter {
            actor: Some("anonymous".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].source.clone(), found[0].repository.clone()),
        (None, None)
    );
    assert_eq!((found[0].at, found[0].success), (T0 + 5000, false));
}

async fn audit_pages(m: &dyn AuditLog) {
    let mut seen = Vec::new();
    let mut page = AuditFilter {
        limit: 4,
        ..filter()
    };
    let mut sizes = Vec::new();
    loop {
        let events = m.query(&page).await.unwrap();
        sizes.push(events.len());
        let Some(last) = events.last() else { break };
        page.before_id = Some(last.id);
        seen.extend(indices(&events));
    }
    assert_eq!(sizes, [4, 4, 2, 0]);
    assert_eq!(seen, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);

    // A cursor combines with the other filters, and events recorded after
    // the first page do not shift the next ones.
    let mut page = AuditFilter {
        repository: Some("audit/app".into()),
        limit: 2,
        ..filter()
    };
    let first = m.query(&page).await.unwrap();
    assert_eq!(indices(&first), [4, 3]);
    m.record(&[event(0)]).await.unwrap();
    page.before_id = Some(first[1].id);
    assert_eq!(indices(&m.query(&page).await.unwrap()), [2, 1]);
}

/// Events older than a cut-off go, in batches; newer ones stay.
async fn audit_prune(m: &dyn AuditLog) {
    let old: Vec<NewAuditEvent> = (1..=5)
        .map(|i| NewAuditEvent { at: i, ..event(0) })
        .collect();
    m.record(&old).await.unwrap();
    let before_t0 = AuditFilter {
        until: Some(T0),
        ..AuditFilter::default()
    };
    assert_eq!(m.prune(4, 2).await.unwrap(), 3);
    let left: Vec<i64> = m
        .query(&before_t0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(left, [5, 4]);
    assert_eq!(m.prune(T0, 100).await.unwrap(), 2);
    assert!(m.query(&before_t0).await.unwrap().is_empty());
    assert_eq!(
        m.query(&filter()).await.unwrap().len(),
        11,
        "newer events stay"
    );
}
