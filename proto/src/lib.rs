//! Protobuf and gRPC definitions for Endure.
//!
//! By default only the messages are generated (prost), so a crate that needs just the
//! messages (the engine, storage) does not depend on tonic, hyper or tokio. The `grpc`
//! feature adds the tonic client and server stubs of every service (`*_client`,
//! `*_server` modules); raft, server and the chaos suite turn it on.
//!
//! # The Dapr Workflow protocol (crate root)
//!
//! `proto/taskhub.proto` is a single, package-less superset of the
//! `TaskHubSidecarService` protocol spoken by every supported SDK dialect:
//! durabletask-dapr 0.17.4, dapr-ext-workflow 1.18.x (vendored
//! `_durabletask`), dapr 1.19.x and the JS SDKs. Because the file has no
//! `package`, prost generates it as `_.rs` and this crate includes it at the
//! crate root, so the types are e.g.
//!
//! * [`HistoryEvent`] with its oneof [`history_event::EventType`]
//!   (`ExecutionStarted`, `TaskScheduled`, `SubOrchestrationInstanceCreated`,
//!   `OrchestratorStarted`, ...),
//! * [`OrchestratorRequest`] / [`OrchestratorResponse`] and
//!   [`orchestrator_action::OrchestratorActionType`],
//! * [`WorkItem`] with [`work_item::Request`],
//! * with the `grpc` feature, the server trait
//!   `task_hub_sidecar_service_server::TaskHubSidecarService` and the client
//!   `task_hub_sidecar_service_client::TaskHubSidecarServiceClient`.
//!
//! Names follow the 0.17.4 dialect (Orchestration*/SubOrchestration*/
//! OrchestratorStarted*); 1.18+ renamed many of them to Workflow*/
//! ChildWorkflow*/WorkflowStarted*, but names never travel on the wire and
//! field numbers are identical. Both `CompleteOrchestratorTask` and
//! `CompleteWorkflowTask` take [`OrchestratorResponse`] (1.18+ calls it
//! `WorkflowResponse`; same wire format). Every field of every dialect is
//! present, with the same number and type, which was verified by script
//! against the descriptors embedded in the published Python wheels and the
//! npm `@dapr/durabletask-js` 1.0.0 proto. Fields that one dialect
//! reserved but an older one still uses are kept. Two fields had to be
//! renamed because their numbers moved between dialects:
//! `GetWorkItemsRequest.capabilities` is field 4 (1.19) and the 0.17 field 10
//! is `legacy_capabilities`; `WorkItem.healthPing` is field 6 (1.19) and the
//! 0.17 field 4 is `legacy_health_ping`.
//!
//! Well-known types (`google.protobuf.StringValue`, `Timestamp`, `Empty`, ...)
//! map to [`prost_types`] (re-exported here); `StringValue` fields are
//! therefore `Option<String>`.
//!
//! # Endure's internal messages
//!
//! If `proto/internal.proto` (package `endure.internal`, importing
//! `taskhub.proto`) exists, it is generated into [`endure::internal`]. Its
//! references to protocol types (`super::super::HistoryEvent`) resolve to the
//! crate root.

/// The well-known protobuf types used by the generated code.
pub use prost_types;

// Package-less `taskhub.proto`.
include!(concat!(env!("OUT_DIR"), "/_.rs"));

mod convert;

/// Generated code for Endure's own `.proto` packages.
#[cfg(endure_internal_proto)]
pub mod endure {
    /// Package `endure.internal` (`proto/internal.proto`).
    pub mod internal {
        include!(concat!(env!("OUT_DIR"), "/endure.internal.rs"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn history_event_roundtrip() {
        let ev = HistoryEvent {
            event_id: -1,
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000,
            }),
            router: Some(TaskRouter {
                source_app_id: "app".into(),
                target_app_id: None,
                target_app_namespace: None,
            }),
            event_type: Some(history_event::EventType::ExecutionStarted(
                ExecutionStartedEvent {
                    name: "wf".into(),
                    input: Some("\"hi\"".into()),
                    orchestration_instance: Some(OrchestrationInstance {
                        instance_id: "abc".into(),
                        execution_id: Some("e1".into()),
                    }),
                    ..Default::default()
                },
            )),
        };
        let bytes = ev.encode_to_vec();
        let back = HistoryEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, ev);
        match back.event_type {
            Some(history_event::EventType::ExecutionStarted(s)) => {
                assert_eq!(s.name, "wf");
                assert_eq!(s.input.as_deref(), Some("\"hi\""));
                assert_eq!(s.version, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wire_numbers() {
        // HistoryEvent.router = 30 (tag 30<<3|2 = 0xF2 0x01), executionStalled = 31,
        // detachedWorkflowInstanceCreated = 32.
        let ev = HistoryEvent {
            router: Some(TaskRouter::default()),
            ..Default::default()
        };
        assert_eq!(ev.encode_to_vec(), vec![0xF2, 0x01, 0x00]);
        let ev = HistoryEvent {
            event_type: Some(history_event::EventType::DetachedWorkflowInstanceCreated(
                Default::default(),
            )),
            ..Default::default()
        };
        assert_eq!(ev.encode_to_vec(), vec![0x82, 0x02, 0x00]);

        // WorkItem: healthPing = 6 (1.19), legacy healthPing = 4, completionToken = 10.
        let wi = WorkItem {
            request: Some(work_item::Request::HealthPing(HealthPing {})),
            completion_token: "t".into(),
        };
        assert_eq!(wi.encode_to_vec(), vec![0x32, 0x00, 0x52, 0x01, b't']);

        // 1.19 GetWorkItemsRequest.capabilities = 4 (packed enum).
        let req = GetWorkItemsRequest::decode(&[0x22, 0x02, 0x03, 0x02][..]).unwrap();
        assert_eq!(
            req.capabilities().collect::<Vec<_>>(),
            [
                WorkerCapability::HealthPing,
                WorkerCapability::StatefulHistory
            ]
        );

        // OrchestratorAction.createDetachedWorkflow = 11, orchestratorVersionNotAvailable = 10.
        let a = OrchestratorAction {
            id: 1,
            orchestrator_action_type: Some(
                orchestrator_action::OrchestratorActionType::OrchestratorVersionNotAvailable(
                    OrchestratorVersionNotAvailableAction {},
                ),
            ),
            router: None,
        };
        assert_eq!(a.encode_to_vec(), vec![0x08, 0x01, 0x52, 0x00]);

        assert_eq!(OrchestrationStatus::Stalled as i32, 8);
    }

    /// The stubs: service and method names as the SDKs call them.
    #[cfg(feature = "grpc")]
    mod stubs {
        use crate::*;

        #[test]
        fn service_name() {
            assert_eq!(
                task_hub_sidecar_service_server::SERVICE_NAME,
                "TaskHubSidecarService"
            );
        }

        /// A transport that records the request path and fails the call.
        #[derive(Clone, Default)]
        struct CapturePath(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

        impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for CapturePath {
            type Response = tonic::codegen::http::Response<tonic::body::Body>;
            type Error = tonic::codegen::StdError;
            type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
                self.0.lock().unwrap().push(req.uri().path().to_owned());
                std::future::ready(Err("captured".into()))
            }
        }

        /// Polls a future that never actually waits (no runtime needed).
        fn poll_once<F: std::future::Future>(f: F) -> F::Output {
            let mut f = std::pin::pin!(f);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match f.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(v) => v,
                std::task::Poll::Pending => panic!("future unexpectedly pending"),
            }
        }

        #[test]
        fn method_paths_have_no_package() {
            let transport = CapturePath::default();
            let mut client = task_hub_sidecar_service_client::TaskHubSidecarServiceClient::new(
                transport.clone(),
            );
            assert!(poll_once(client.start_instance(CreateInstanceRequest::default())).is_err());
            assert!(
                poll_once(client.complete_workflow_task(OrchestratorResponse::default())).is_err()
            );
            assert!(poll_once(client.get_work_items(GetWorkItemsRequest::default())).is_err());
            assert_eq!(
                *transport.0.lock().unwrap(),
                [
                    "/TaskHubSidecarService/StartInstance",
                    "/TaskHubSidecarService/CompleteWorkflowTask",
                    "/TaskHubSidecarService/GetWorkItems",
                ]
            );
        }
    }
}
