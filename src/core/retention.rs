//! Which tags a project's retention rules delete (a pure decision, so every
//! rule is tested without a clock).

use std::collections::HashSet;

use crate::metadata::{glob_matches, ProjectPolicy, TagTimes};

const DAY_MS: i64 = 86_400_000;

/// The tags of one repository that `policy`'s retention rules delete at
/// `now` (Unix ms), by name. A tag is deleted when a delete rule selects
/// it, or, when the rules only keep, when no keep rule keeps it; never
/// when a keep rule keeps it or an immutability rule protects it.
pub fn tags_to_delete(policy: &ProjectPolicy, tags: &[TagTimes], now: i64) -> Vec<String> {
    let rules = &policy.retention;
    if rules.is_empty() {
        return Vec::new();
    }
    let mut newest: Vec<&TagTimes> = tags.iter().collect();
    newest.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.name.cmp(&b.name)));
    let kept_last: HashSet<&str> = newest
        .iter()
        .take(rules.keep_last.unwrap_or(0) as usize)
        .map(|t| t.name.as_str())
        .collect();
    let keeps = |t: &TagTimes| {
        kept_last.contains(t.name.as_str())
            || rules.keep_patterns.iter().any(|p| glob_matches(p, &t.name))
            || policy.immutable_rule(&t.name).is_some()
    };
    let before = |days: u32| now - i64::from(days) * DAY_MS;
    let has_delete_rule =
        rules.delete_older_than_days.is_some() || rules.delete_unpulled_days.is_some();
    let selected = |t: &TagTimes| {
        if !has_delete_rule {
            return true;
        }
        let old = rules
            .delete_older_than_days
            .is_some_and(|d| t.pushed_at < before(d));
        let unpulled = rules
            .delete_unpulled_days
            .is_some_and(|d| t.pulled_at.unwrap_or(t.pushed_at) < before(d));
        old || unpulled
    };
    let mut doomed: Vec<String> = tags
        .iter()
        .filter(|t| selected(t) && !keeps(t))
        .map(|t| t.name.clone())
        .collect();
    doomed.sort();
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Retention;

    const NOW: i64 = 100 * DAY_MS;

    fn tag(name: &str, pushed_days_ago: i64, pulled_days_ago: Option<i64>) -> TagTimes {
        TagTimes {
            name: name.into(),
            pushed_at: NOW - pushed_days_ago * DAY_MS,
            pulled_at: pulled_days_ago.map(|d| NOW - d * DAY_MS),
        }
    }

    fn policy(retention: Retention) -> ProjectPolicy {
        ProjectPolicy {
            retention,
            ..ProjectPolicy::default()
        }
    }

    fn tags() -> Vec<TagTimes> {
        vec![
            tag("v1", 40, Some(1)),
            tag("v2", 30, None),
            tag("dev-a", 20, Some(25)),
            tag("dev-b", 10, None),
            tag("latest", 1, Some(0)),
        ]
    }

    #[test]
    fn no_rules_delete_nothing() {
        assert!(tags_to_delete(&ProjectPolicy::default(), &tags(), NOW).is_empty());
    }

    #[test]
    fn keep_last_alone_deletes_all_but_the_newest() {
        let p = policy(Retention {
            keep_last: Some(2),
            ..Retention::default()
        });
        assert_eq!(tags_to_delete(&p, &tags(), NOW), ["dev-a", "v1", "v2"]);
    }

    #[test]
    fn older_than_deletes_by_push_time() {
        let p = policy(Retention {
            delete_older_than_days: Some(25),
            ..Retention::default()
        });
        assert_eq!(tags_to_delete(&p, &tags(), NOW), ["v1", "v2"]);
    }

    #[test]
    fn unpulled_counts_from_the_push_when_never_pulled() {
        let p = policy(Retention {
            delete_unpulled_days: Some(15),
            ..Retention::default()
        });
        // v1 was pulled a day ago; v2 never (pushed 30 days ago); dev-a
        // last pulled 25 days ago; dev-b never, pushed 10 days ago.
        assert_eq!(tags_to_delete(&p, &tags(), NOW), ["dev-a", "v2"]);
    }

    #[test]
    fn any_keep_rule_wins_over_delete_rules() {
        let mut p = policy(Retention {
            keep_last: Some(1),
            keep_patterns: vec!["v*".into()],
            delete_older_than_days: Some(0),
            ..Retention::default()
        });
        assert_eq!(tags_to_delete(&p, &tags(), NOW), ["dev-a", "dev-b"]);
        p.immutable_tags = vec!["dev-?".into()];
        assert!(tags_to_delete(&p, &tags(), NOW).is_empty());
    }

    #[test]
    fn patterns_alone_delete_what_they_do_not_match() {
        let p = policy(Retention {
            keep_patterns: vec!["v*".into(), "latest".into()],
            ..Retention::default()
        });
        assert_eq!(tags_to_delete(&p, &tags(), NOW), ["dev-a", "dev-b"]);
    }
}
