//! Conversions between generated message families that share payloads but not field
//! numbers (the same oneof appears at different tags in actions and in history events).

use crate::{create_timer_action, timer_created_event};

impl From<create_timer_action::Origin> for timer_created_event::Origin {
    /// A CreateTimer action's origin, as its TimerCreated event records it.
    fn from(origin: create_timer_action::Origin) -> Self {
        use create_timer_action::Origin as Action;
        use timer_created_event::Origin as Event;
        match origin {
            Action::CreateTimer(o) => Event::CreateTimer(o),
            Action::ExternalEvent(o) => Event::ExternalEvent(o),
            Action::ActivityRetry(o) => Event::ActivityRetry(o),
            Action::ChildWorkflowRetry(o) => Event::ChildWorkflowRetry(o),
        }
    }
}
