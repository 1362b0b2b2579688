//! Bad input and faults: authentication, trust, malformed protocol traffic, invalid VM specs,
//! permissions. Each is refused with a clear error and changes nothing.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use strata_shared::api::manager as m;
use strata_shared::client::{connect_websocket, MANAGER_PORT};
use strata_shared::model::*;
use strata_shared::{Client, ClientError, ErrorCode, Trust};
use strata_tests::{bins, guest, task_ok, Lab, PASSWORD};
use tokio_tungstenite::tungstenite::Message;

fn code(e: ClientError) -> ErrorCode {
    e.code()
        .unwrap_or_else(|| panic!("expected a coded error, got {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_trust_are_enforced() {
    let lab = Lab::start_with(&bins!(), &["--session-ttl-secs", "2"]).await;
    let addr = lab.server.address.clone();
    let trust = Trust::Thumbprint(lab.server.thumbprint.clone());

    // No session: refused.
    let anon = Client::connect(&addr, trust.clone()).await.unwrap();
    let e = anon
        .call::<m::VmList>(m::VmListParams::default())
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::NotAuthenticated);
    // server.info needs no session.
    let info = anon.call::<m::ServerInfoMethod>(Empty {}).await.unwrap();
    assert_eq!(info.kind, ServerKind::Manager);

    // Wrong password: refused, and recorded as an event without the password in it.
    let e = anon.login("admin", "wrong-password").await.unwrap_err();
    assert_eq!(code(e), ErrorCode::NotAuthenticated);
    let e = anon.login("nobody", PASSWORD).await.unwrap_err();
    assert_eq!(code(e), ErrorCode::NotAuthenticated);
    let events = lab
        .client
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.kind == "user.loginFailed"));
    assert!(!events.iter().any(|e| e.message.contains("wrong-password")));

    // A bogus token does not resume; a real one does on another connection, until it expires.
    let e = anon
        .call::<m::SessionResume>(ResumeParams {
            token: "00".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::NotAuthenticated);
    let fresh = Client::connect(&addr, trust.clone()).await.unwrap();
    let session = fresh.login("admin", PASSWORD).await.unwrap();
    let other = Client::connect(&addr, trust.clone()).await.unwrap();
    other
        .call::<m::SessionResume>(ResumeParams {
            token: session.token.clone(),
        })
        .await
        .unwrap();
    other.call::<m::HostList>(Empty {}).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let e = fresh.call::<m::HostList>(Empty {}).await.unwrap_err();
    assert_eq!(
        code(e),
        ErrorCode::NotAuthenticated,
        "an expired session is refused"
    );
    let late = Client::connect(&addr, trust.clone()).await.unwrap();
    let e = late
        .call::<m::SessionResume>(ResumeParams {
            token: session.token,
        })
        .await
        .unwrap_err();
    assert_eq!(
        code(e),
        ErrorCode::NotAuthenticated,
        "an expired token does not resume"
    );

    // Logout ends the token.
    let c = Client::connect(&addr, trust.clone()).await.unwrap();
    let s = c.login("admin", PASSWORD).await.unwrap();
    c.call::<m::SessionLogout>(Empty {}).await.unwrap();
    assert_eq!(
        code(c.call::<m::HostList>(Empty {}).await.unwrap_err()),
        ErrorCode::NotAuthenticated
    );
    let c2 = Client::connect(&addr, trust.clone()).await.unwrap();
    assert!(c2
        .call::<m::SessionResume>(ResumeParams { token: s.token })
        .await
        .is_err());

    // Wrong thumbprint: the client refuses the server, naming both thumbprints.
    let wrong = "AA:".repeat(31) + "AA";
    let e = Client::connect(&addr, Trust::Thumbprint(wrong.clone()))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert_eq!(code(e), ErrorCode::NotTrusted);
    assert!(
        msg.contains(&lab.server.thumbprint) && msg.contains(&wrong),
        "{msg}"
    );

    // host.add without a thumbprint reports the host's; with a wrong one it is refused.
    let c = lab.server.client("admin").await;
    let e = c
        .call::<m::HostAdd>(HostAddParams {
            address: lab.agent.address.clone(),
            username: "root".into(),
            password: PASSWORD.into(),
            thumbprint: None,
            cluster: None,
        })
        .await
        .unwrap_err();
    match e {
        ClientError::Rpc(r) => {
            assert_eq!(r.code, ErrorCode::NotTrusted);
            assert_eq!(r.data.unwrap()["thumbprint"], json!(lab.agent.thumbprint));
        }
        other => panic!("unexpected {other}"),
    }
    let t = c
        .call::<m::HostAdd>(HostAddParams {
            address: "127.0.0.1:1".into(),
            username: "root".into(),
            password: PASSWORD.into(),
            thumbprint: Some(wrong.clone()),
            cluster: None,
        })
        .await
        .unwrap();
    let done = c.wait_task(t.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        done.error.unwrap().code,
        ErrorCode::Unavailable,
        "an unreachable host fails clearly"
    );
    assert_eq!(
        c.call::<m::HostList>(Empty {}).await.unwrap().len(),
        1,
        "nothing was added"
    );

    // The agent itself refuses a wrong root password.
    let direct = Client::connect(
        &lab.agent.address,
        Trust::Thumbprint(lab.agent.thumbprint.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        code(direct.login("root", "nope").await.unwrap_err()),
        ErrorCode::NotAuthenticated
    );
    assert_eq!(
        code(direct.call_raw("vm.list", json!({})).await.unwrap_err()),
        ErrorCode::NotAuthenticated
    );
}

async fn roundtrip(ws: &mut strata_shared::client::WsStream, msg: Message) -> Value {
    ws.send(msg).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_traffic_gets_json_rpc_errors_and_the_connection_survives() {
    let lab = Lab::start(&bins!()).await;
    let trust = Trust::Thumbprint(lab.server.thumbprint.clone());
    let (mut ws, _, _) = connect_websocket(&lab.server.address, trust, MANAGER_PORT)
        .await
        .unwrap();

    let r = roundtrip(&mut ws, Message::Text("{not json".into())).await;
    assert_eq!(r["error"]["code"], -32700);
    assert_eq!(r["id"], Value::Null);
    let r = roundtrip(
        &mut ws,
        Message::Text(r#"{"jsonrpc":"2.0","id":1,"method":"vm.explode"}"#.into()),
    )
    .await;
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (json!(1), json!(-32601))
    );
    let r = roundtrip(&mut ws, Message::Text(r#"{"jsonrpc":"2.0","id":2}"#.into())).await;
    assert_eq!(r["error"]["code"], -32600);
    let r = roundtrip(
        &mut ws,
        Message::Text(r#"[{"jsonrpc":"2.0","id":3,"method":"server.info"}]"#.into()),
    )
    .await;
    assert_eq!(r["error"]["code"], -32600);
    let r = roundtrip(
        &mut ws,
        Message::Text(
            r#"{"jsonrpc":"2.0","id":4,"method":"session.login","params":{"username":5}}"#.into(),
        ),
    )
    .await;
    assert_eq!(
        r["error"]["code"], -32602,
        "wrong param types: InvalidParams"
    );
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("session.login"));
    let r = roundtrip(
        &mut ws,
        Message::Text(r#"{"jsonrpc":"2.0","id":5,"method":"server.info","params":[1]}"#.into()),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602);
    let r = roundtrip(&mut ws, Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(r["error"]["code"], -32600);
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"server.info","params":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    let r = roundtrip(&mut ws, Message::Text(huge.into())).await;
    assert_eq!(r["error"]["code"], -32600);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exceeds the limit"));
    // The same connection still answers, and so does the server.
    let r = roundtrip(
        &mut ws,
        Message::Text(r#"{"jsonrpc":"2.0","id":7,"method":"server.info"}"#.into()),
    )
    .await;
    assert_eq!(r["result"]["product"], "Strata");
    lab.client.call::<m::HostList>(Empty {}).await.unwrap();
    // A notification-style request (no id) gets no answer but is harmless.
    ws.send(Message::Text(
        r#"{"jsonrpc":"2.0","method":"server.info"}"#.into(),
    ))
    .await
    .unwrap();
    let r = roundtrip(
        &mut ws,
        Message::Text(r#"{"jsonrpc":"2.0","id":"s","method":"server.info"}"#.into()),
    )
    .await;
    assert_eq!(r["id"], "s");
}

fn spec(vcpus: u32, memory_mib: u64, kernel: &str) -> VmSpec {
    let g = guest();
    VmSpec {
        vcpus,
        memory_mib,
        engine: Engine::Qemu,
        machine: Machine::Microvm,
        boot: BootSpec {
            kernel: kernel.into(),
            initrd: Some(g.initrd.display().to_string()),
            cmdline: String::new(),
        },
        allocation: Default::default(),
        disks: Vec::new(),
        template: false,
        nics: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_vms_are_refused_and_leave_nothing_behind() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let kernel = guest().kernel.display().to_string();
    let vm = lab.create_guest_vm("dup", 1).await;

    let create = |name: &str, s: VmSpec| m::VmCreateParams {
        name: name.into(),
        host: lab.host,
        datastore: None,
        spec: s,
    };
    let cases = [
        (create("dup", spec(1, 128, &kernel)), ErrorCode::Conflict),
        (
            create("zero-mem", spec(1, 0, &kernel)),
            ErrorCode::InvalidArgument,
        ),
        (
            create("zero-cpu", spec(0, 128, &kernel)),
            ErrorCode::InvalidArgument,
        ),
        (
            create("../escape", spec(1, 128, &kernel)),
            ErrorCode::InvalidArgument,
        ),
        (
            m::VmCreateParams {
                host: uuid::Uuid::new_v4(),
                ..create("nohost", spec(1, 128, &kernel))
            },
            ErrorCode::NotFound,
        ),
    ];
    for (params, want) in cases {
        let name = params.name.clone();
        let e = c.call::<m::VmCreate>(params).await.unwrap_err();
        assert_eq!(code(e), want, "{name}");
    }
    // Host-side checks fail the task: a missing kernel, more memory than the host has.
    for (name, s) in [
        ("nokernel", spec(1, 128, "/nonexistent/vmlinuz")),
        ("toobig", spec(1, 1 << 20, &kernel)),
    ] {
        let t = c.call::<m::VmCreate>(create(name, s)).await.unwrap();
        let done = c.wait_task(t.id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(done.state, TaskState::Error, "{name}");
        let e = done.error.unwrap();
        assert!(
            matches!(
                e.code,
                ErrorCode::InvalidArgument | ErrorCode::InsufficientResources
            ),
            "{name}: {e:?}"
        );
        if name == "nokernel" {
            assert!(e.message.contains("/nonexistent/vmlinuz"), "{}", e.message);
        }
    }
    // Nothing half-created: one VM in the inventory, one directory on the datastore.
    let vms = c
        .call::<m::VmList>(m::VmListParams::default())
        .await
        .unwrap();
    assert_eq!(vms.iter().map(|v| v.id).collect::<Vec<_>>(), vec![vm]);
    let dirs: Vec<String> = std::fs::read_dir(lab.datastore())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(dirs, vec!["dup".to_string()]);
    // Operations on a missing VM: NotFound.
    let e = c
        .call::<m::VmPowerOn>(IdParams {
            id: uuid::Uuid::new_v4(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_users_may_do() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let vm = lab.create_guest_vm("guarded", 1).await;
    c.call::<m::UserCreate>(UserCreateParams {
        username: "viewer".into(),
        password: PASSWORD.into(),
        role: Role::ReadOnly,
    })
    .await
    .unwrap();
    let e = c
        .call::<m::UserCreate>(UserCreateParams {
            username: "viewer".into(),
            password: PASSWORD.into(),
            role: Role::Admin,
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::Conflict);
    let e = c
        .call::<m::UserCreate>(UserCreateParams {
            username: "short".into(),
            password: "x".into(),
            role: Role::Admin,
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidArgument);

    let viewer = lab.server.client("viewer").await;
    assert_eq!(
        viewer
            .call::<m::VmList>(m::VmListParams::default())
            .await
            .unwrap()
            .len(),
        1
    );
    for e in [
        viewer
            .call::<m::VmPowerOn>(IdParams { id: vm })
            .await
            .unwrap_err(),
        viewer
            .call::<m::VmDestroy>(IdParams { id: vm })
            .await
            .unwrap_err(),
        viewer.call::<m::UserList>(Empty {}).await.unwrap_err(),
    ] {
        assert_eq!(code(e), ErrorCode::NoPermission);
    }
    let t = c.call::<m::VmDestroy>(IdParams { id: vm }).await.unwrap();
    task_ok(c, t).await;
}
