//! `workflow history`: history events as a readable table or as JSON.
//!
//! Completion events only carry the ID of the event that scheduled them; the name is looked
//! up there, so that a `TaskCompleted` row says which activity completed.

use std::collections::HashMap;

use endure_proto::HistoryEvent;
use serde_json::{json, Map, Value};

use super::events::{describe, Described};
use super::output::{json_time, table_time, truncate, Table, NONE};

/// Characters of payload a table row shows; the full text is in `--output json`.
pub const PAYLOAD_SUMMARY_CHARS: usize = 40;

/// Every event reduced, with completions named after the event they answer.
fn describe_all(events: &[HistoryEvent]) -> Vec<(&HistoryEvent, Described)> {
    let mut described: Vec<_> = events
        .iter()
        .map(|event| (event, describe(event)))
        .collect();
    let names: HashMap<i32, String> = described
        .iter()
        .filter(|(event, d)| event.event_id >= 0 && d.answers.is_none())
        .filter_map(|(event, d)| Some((event.event_id, d.name.clone()?)))
        .collect();
    for (_, d) in &mut described {
        if let (None, Some(name)) = (&d.name, d.answers.and_then(|id| names.get(&id))) {
            d.name = Some(name.clone());
            d.fields.insert("name".into(), json!(name));
        }
    }
    described
}

/// The history as a table: event ID, type, time, name and a short payload.
pub fn table(events: &[HistoryEvent]) -> String {
    let mut table = Table::new(&["ID", "TYPE", "TIMESTAMP", "NAME", "PAYLOAD"]);
    for (event, d) in describe_all(events) {
        table.row(vec![
            event.event_id.to_string(),
            d.kind.to_string(),
            table_time(event.timestamp.as_ref()),
            d.name.unwrap_or_else(|| NONE.to_string()),
            d.payload
                .map(|p| truncate(&p, PAYLOAD_SUMMARY_CHARS))
                .unwrap_or_default(),
        ]);
    }
    table.render()
}

/// The history as JSON: one object per event with `eventId`, `type`, `timestamp` and the
/// event's fields, payloads in full.
pub fn json(events: &[HistoryEvent]) -> Value {
    let objects = describe_all(events)
        .into_iter()
        .map(|(event, d)| {
            let mut object = Map::new();
            object.insert("eventId".into(), json!(event.event_id));
            object.insert("type".into(), json!(d.kind));
            object.insert("timestamp".into(), json_time(event.timestamp.as_ref()));
            object.extend(d.fields);
            Value::Object(object)
        })
        .collect();
    Value::Array(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::events::fixtures::{event, scheduled};
    use endure_proto::history_event::EventType;
    use endure_proto::prost_types::Timestamp;
    use endure_proto::*;

    #[test]
    fn completions_are_named_after_what_they_answer_and_payloads_are_cut() {
        let long = format!("\"{}\"", "x".repeat(100));
        let completed = TaskCompletedEvent {
            task_scheduled_id: 0,
            result: Some(long),
            ..Default::default()
        };
        let events = [
            scheduled(0, "Shout"),
            event(-1, 1_700_000_001, EventType::TaskCompleted(completed)),
        ];
        let text = table(&events);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].starts_with("ID  TYPE"), "{text}");
        assert!(
            rows[2].starts_with("-1  TaskCompleted  2023-11-14T22:13:21Z  Shout"),
            "{text}"
        );
        let payload = rows[2].rsplit("  ").next().unwrap();
        assert_eq!(payload.chars().count(), PAYLOAD_SUMMARY_CHARS);
        assert!(payload.ends_with('…'));
    }

    #[test]
    fn timers_show_when_they_fire_and_fired_timers_their_name() {
        let fire_at = Some(Timestamp {
            seconds: 1_700_000_060,
            nanos: 0,
        });
        let created = TimerCreatedEvent {
            fire_at,
            name: Some("nap".into()),
            ..Default::default()
        };
        let fired = TimerFiredEvent {
            fire_at,
            timer_id: 2,
        };
        let events = [
            event(2, 0, EventType::TimerCreated(created)),
            event(-1, 60, EventType::TimerFired(fired)),
        ];
        let described = describe_all(&events);
        assert_eq!(
            described[0].1.payload.as_deref(),
            Some("fireAt 2023-11-14T22:14:20Z")
        );
        assert_eq!(described[1].1.name.as_deref(), Some("nap"));
    }

    #[test]
    fn json_has_the_common_fields_and_full_payloads() {
        let long = "y".repeat(100);
        let raised = EventRaisedEvent {
            name: "Approve".into(),
            input: Some(long.clone()),
        };
        let value = json(&[event(-1, 1_700_000_000, EventType::EventRaised(raised))]);
        assert_eq!(
            value,
            json!([{ "eventId": -1, "type": "EventRaised", "timestamp": "2023-11-14T22:13:20Z", "name": "Approve", "input": long }])
        );
    }

    #[test]
    fn an_event_without_a_type_is_unknown() {
        let empty = HistoryEvent::default();
        assert_eq!(describe(&empty).kind, "Unknown");
        assert!(table(&[empty])
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("0   Unknown  -"));
    }
}
