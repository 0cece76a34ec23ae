//! Unit tests of path matching: every route, decoding, 404 and 405.

use super::*;
use hyper::StatusCode;

fn ok(method: Method, path: &str) -> Route {
    resolve(&method, path).unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

#[test]
fn workflow_routes_under_every_api_version() {
    for v in WORKFLOW_API_VERSIONS {
        assert_eq!(
            ok(Method::POST, &format!("/{v}/workflows/dapr/Order/start")),
            Route::Start {
                name: "Order".into()
            }
        );
        assert_eq!(
            ok(Method::GET, &format!("/{v}/workflows/dapr/abc")),
            Route::Get {
                instance_id: "abc".into()
            }
        );
        assert_eq!(
            ok(Method::POST, &format!("/{v}/workflows/dapr/abc/purge")),
            Route::Manage {
                instance_id: "abc".into(),
                action: Action::Purge
            }
        );
    }
    let raise = ok(Method::POST, "/v1.0/workflows/dapr/abc/raiseEvent/Approval");
    assert_eq!(
        raise,
        Route::RaiseEvent {
            instance_id: "abc".into(),
            event_name: "Approval".into()
        }
    );
    for (word, action) in [
        ("terminate", Action::Terminate),
        ("pause", Action::Pause),
        ("resume", Action::Resume),
    ] {
        let route = ok(Method::POST, &format!("/v1.0/workflows/dapr/i-1/{word}"));
        assert_eq!(
            route,
            Route::Manage {
                instance_id: "i-1".into(),
                action
            }
        );
    }
}

#[test]
fn empty_segments_reach_the_handler_for_dapr_missing_errors() {
    assert_eq!(
        ok(Method::POST, "/v1.0/workflows/dapr//start"),
        Route::Start {
            name: String::new()
        }
    );
    assert_eq!(
        ok(Method::GET, "/v1.0/workflows/dapr/"),
        Route::Get {
            instance_id: String::new()
        }
    );
    let no_event = Route::RaiseEvent {
        instance_id: "x".into(),
        event_name: String::new(),
    };
    assert_eq!(
        ok(Method::POST, "/v1.0/workflows/dapr/x/raiseEvent"),
        no_event
    );
    assert_eq!(
        ok(Method::POST, "/v1.0/workflows/dapr/x/raiseEvent/"),
        no_event
    );
}

#[test]
fn segments_are_percent_decoded() {
    let raise = ok(
        Method::POST,
        "/v1.0/workflows/dapr/a%3Ab/raiseEvent/new%20order",
    );
    assert_eq!(
        raise,
        Route::RaiseEvent {
            instance_id: "a:b".into(),
            event_name: "new order".into()
        }
    );
    // In a path, '+' is a plus sign.
    assert_eq!(
        ok(Method::GET, "/v1.0/workflows/dapr/a+b"),
        Route::Get {
            instance_id: "a+b".into()
        }
    );
    let bad = resolve(&Method::GET, "/v1.0/workflows/dapr/%FF").unwrap_err();
    assert_eq!(
        (bad.status, bad.code),
        (StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST")
    );
}

#[test]
fn operations_routes() {
    assert_eq!(ok(Method::GET, "/v1.0/healthz"), Route::DaprHealth);
    assert_eq!(ok(Method::GET, "/v1.0/metadata"), Route::DaprMetadata);
    assert_eq!(ok(Method::GET, "/healthz"), Route::Live);
    assert_eq!(ok(Method::GET, "/readyz"), Route::Ready);
    assert_eq!(ok(Method::GET, "/metrics"), Route::Metrics);
    assert_eq!(ok(Method::GET, "/cluster/status"), Route::ClusterStatus);
    assert_eq!(
        ok(Method::HEAD, "/readyz"),
        Route::Ready,
        "HEAD wherever GET"
    );
}

#[test]
fn unknown_paths_are_404() {
    for path in [
        "/",
        "",
        "/v2.0/workflows/dapr/x",
        "/v1.0/workflows/dapr",
        "/v1.0/workflows/dapr/x/explode",
        "/v1.0/workflows/dapr/x/raiseEvent/e/extra",
        "/v1.0-beta1/healthz",
        "/healthz/",
        "/v1.0/state/store",
    ] {
        let error = resolve(&Method::GET, path).unwrap_err();
        assert_eq!(
            (error.status, error.code, error.allow),
            (StatusCode::NOT_FOUND, "ERR_NOT_FOUND", None),
            "{path}"
        );
    }
}

#[test]
fn known_paths_with_the_wrong_method_are_405_with_allow() {
    let cases = [
        (Method::GET, "/v1.0/workflows/dapr/Order/start", "POST"),
        (Method::DELETE, "/v1.0/workflows/dapr/abc", "GET, HEAD"),
        (Method::GET, "/v1.0/workflows/dapr/abc/terminate", "POST"),
        (Method::PUT, "/v1.0/workflows/dapr/abc/raiseEvent/e", "POST"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::POST, "/metrics", "GET, HEAD"),
        (Method::HEAD, "/v1.0/workflows/dapr/abc/pause", "POST"),
    ];
    for (method, path, allow) in cases {
        let error = resolve(&method, path).unwrap_err();
        assert_eq!(
            error.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(error.allow, Some(allow), "{method} {path}");
        assert_eq!(error.code, "ERR_METHOD_NOT_ALLOWED");
    }
}

#[test]
fn query_parameters_are_form_decoded() {
    assert_eq!(
        query_param(Some("instanceID=abc"), "instanceID").unwrap(),
        Some("abc".into())
    );
    assert_eq!(
        query_param(Some("appID=x&instanceID=a%2Db+c"), "instanceID").unwrap(),
        Some("a-b c".into())
    );
    assert_eq!(
        query_param(Some("instanceID=first&instanceID=second"), "instanceID").unwrap(),
        Some("first".into())
    );
    assert_eq!(
        query_param(Some("instanceid=abc"), "instanceID").unwrap(),
        None,
        "names are case-sensitive"
    );
    assert_eq!(
        query_param(Some("instanceID"), "instanceID").unwrap(),
        Some(String::new())
    );
    assert_eq!(query_param(None, "instanceID").unwrap(), None);
    assert!(query_param(Some("instanceID=%C3%28"), "instanceID").is_err());
    assert_eq!(percent_decode("100%", false).as_deref(), Some("100%"));
    assert_eq!(percent_decode("%4", false).as_deref(), Some("%4"));
    assert_eq!(percent_decode("%41%42", false).as_deref(), Some("AB"));
}
