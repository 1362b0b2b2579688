//! The `strata` CLI against a real manager: JSON output for scripts, one-line errors with a
//! non-zero exit status.

use std::process::{Command, Output};

use strata_tests::{bins, Lab, PASSWORD};

/// Runs the CLI with the lab's connection settings, overridden by `env` (an empty value
/// removes the variable).
fn strata(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bins!().cli);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STRATA_URL", format!("wss://{}", lab.server.address))
        .env("STRATA_USERNAME", "admin")
        .env("STRATA_PASSWORD", PASSWORD)
        .env("STRATA_THUMBPRINT", &lab.server.thumbprint);
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_the_manager_and_fails_cleanly() {
    let lab = Lab::start(&bins!()).await;
    let g = strata_tests::guest();

    let o = strata(&lab, &["host", "list", "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hosts: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(hosts[0]["connectionState"], "connected");
    let host = hosts[0]["id"].as_str().unwrap().to_string();

    let o = strata(
        &lab,
        &[
            "vm",
            "create",
            "cli01",
            "--host",
            &host,
            "--memory",
            "128",
            "--engine",
            "qemu",
            "--kernel",
            &g.kernel.display().to_string(),
            "--initrd",
            &g.initrd.display().to_string(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("success"), "{}", stdout(&o));

    let o = strata(&lab, &["vm", "list"], &[]);
    assert!(o.status.success());
    let table = stdout(&o);
    assert!(
        table.starts_with("NAME") && table.contains("cli01") && table.contains("poweredOff"),
        "{table}"
    );

    let o = strata(&lab, &["vm", "info", "cli01", "--json"], &[]);
    let info: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(info["spec"]["memoryMib"], 128);

    // Errors: one line on stderr, non-zero exit, nothing on stdout.
    for (args, env, needle) in [
        (vec!["vm", "info", "nope"], vec![], "no VM named"),
        (
            vec!["vm", "list"],
            vec![("STRATA_PASSWORD", "wrong")],
            "incorrect user name or password",
        ),
        (
            vec!["vm", "list"],
            vec![("STRATA_THUMBPRINT", "")],
            "not pinned",
        ),
        (
            vec![
                "vm",
                "create",
                "x",
                "--host",
                host.as_str(),
                "--memory",
                "0",
                "--kernel",
                "/k",
            ],
            vec![],
            "memoryMib",
        ),
        (
            vec!["vm", "power-off", "cli01", "--hard"],
            vec![],
            "already powered off",
        ),
    ] {
        let o = strata(&lab, &args, &env);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("strata: error:") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(stdout(&o).is_empty());
    }

    let o = strata(&lab, &["events", "--json", "--object", "cli01"], &[]);
    let events: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "vm.created"));

    let o = strata(&lab, &["thumbprint"], &[("STRATA_THUMBPRINT", "")]);
    assert_eq!(stdout(&o).trim(), lab.server.thumbprint);

    // Resource pools and allocations.
    let o = strata(
        &lab,
        &[
            "pool",
            "create",
            "Finance",
            "--owner",
            &host,
            "--cpu-reservation",
            "1000",
            "--cpu-shares",
            "high",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = strata(
        &lab,
        &[
            "pool",
            "create",
            "Acct",
            "--parent",
            "Finance",
            "--cpu-reservation",
            "1001",
        ],
        &[],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("short by 1 MHz"),
        "{}",
        stderr(&o)
    );
    let o = strata(
        &lab,
        &["pool", "update", "Finance", "--cpu-limit", "500"],
        &[],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("above the limit"),
        "{}",
        stderr(&o)
    );
    let o = strata(&lab, &["vm", "move", "cli01", "--pool", "Finance"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = strata(
        &lab,
        &[
            "vm",
            "set-allocation",
            "cli01",
            "--mem-limit",
            "64",
            "--json",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["spec"]["allocation"]["memory"]["limit"], 64);
    let o = strata(&lab, &["pool", "usage", &host], &[]);
    let table = stdout(&o);
    assert!(
        table.contains("Finance") && table.contains("root"),
        "{table}"
    );
    let o = strata(&lab, &["pool", "list", "--json"], &[]);
    let pools: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(pools[0]["allocation"]["cpu"]["shares"]["level"], "high");
    let o = strata(&lab, &["pool", "delete", "Finance", "--move-children"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Disks: create with a unit size, list as a table and as JSON, refuse a shrink.
    let o = strata(
        &lab,
        &[
            "vm", "disk", "create", "cli01", "--size", "1G", "--format", "qcow2",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = strata(&lab, &["vm", "disk", "list", "cli01"], &[]);
    let table = stdout(&o);
    assert!(
        table.starts_with("DEVICE") && table.contains("vda") && table.contains("cli01.qcow2"),
        "{table}"
    );
    let o = strata(&lab, &["vm", "disk", "list", "cli01", "--json"], &[]);
    let disks: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(disks[0]["capacityBytes"], 1u64 << 30);
    let o = strata(
        &lab,
        &[
            "vm",
            "disk",
            "grow",
            "cli01",
            "cli01.qcow2",
            "--size",
            "512M",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("shrinking"), "{}", stderr(&o));
    let o = strata(
        &lab,
        &["vm", "disk", "create", "cli01", "--size", "lots"],
        &[],
    );
    assert!(stderr(&o).contains("not a size"), "{}", stderr(&o));

    // Snapshots, a linked clone and a template.
    let o = strata(&lab, &["vm", "snapshot", "create", "cli01", "clean"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = strata(&lab, &["vm", "snapshot", "list", "cli01"], &[]);
    assert!(
        stdout(&o).contains("clean (you are here)"),
        "{}",
        stdout(&o)
    );
    let o = strata(
        &lab,
        &[
            "vm",
            "clone",
            "cli01",
            "cli02",
            "--linked",
            "--snapshot",
            "clean",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = strata(&lab, &["vm", "template", "cli02"], &[]);
    assert_eq!(stdout(&o).trim(), "cli02 is a template", "{}", stderr(&o));
    let o = strata(&lab, &["vm", "power-on", "cli02"], &[]);
    assert!(stderr(&o).contains("is a template"), "{}", stderr(&o));
    let o = strata(&lab, &["vm", "snapshot", "delete", "cli01", "nope"], &[]);
    assert!(
        stderr(&o).contains("no snapshot \"nope\""),
        "{}",
        stderr(&o)
    );
    let o = strata(&lab, &["vm", "destroy", "cli01"], &[]);
    assert!(stderr(&o).contains("linked clone cli02"), "{}", stderr(&o));
    let o = strata(&lab, &["vm", "destroy", "cli02"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = strata(&lab, &["vm", "snapshot", "delete", "cli01", "clean"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = strata(&lab, &["vm", "destroy", "cli01"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !lab.datastore().join("cli01").exists(),
        "the VM's directory, disks included, is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_move_in_and_out_of_a_datastore_with_progress() {
    let lab = Lab::start(&bins!()).await;
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("boot.img");
    // 1.5 MiB: three chunks, the last one short.
    let data: Vec<u8> = (0..(3u32 << 19)).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let src_s = src.display().to_string();

    let o = strata(&lab, &["datastore", "list"], &[]);
    assert!(
        stdout(&o).contains("datastore1") && stdout(&o).contains("accessible"),
        "{}",
        stdout(&o)
    );
    let o = strata(
        &lab,
        &["datastore", "upload", "datastore1", &src_s, "boot.img"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("(100%)"), "progress: {}", stderr(&o));
    assert_eq!(
        std::fs::read(lab.datastore().join("boot.img")).unwrap(),
        data,
        "the file arrived whole"
    );
    let o = strata(&lab, &["datastore", "ls", "datastore1"], &[]);
    assert!(
        stdout(&o).contains("boot.img") && stdout(&o).contains("1.5 MiB"),
        "{}",
        stdout(&o)
    );
    assert!(
        !stdout(&o).contains(".strata"),
        "hidden files are not listed"
    );

    let back = local.path().join("back.img");
    let o = strata(
        &lab,
        &[
            "datastore",
            "download",
            "datastore1",
            "boot.img",
            &back.display().to_string(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // Refusals: replacing without --overwrite, leaving the datastore, Strata's own files.
    for (args, words) in [
        (
            vec!["datastore", "upload", "datastore1", &src_s, "boot.img"],
            "already exists",
        ),
        (
            vec!["datastore", "upload", "datastore1", &src_s, "../escape.img"],
            "inside the datastore",
        ),
        (
            vec![
                "datastore",
                "download",
                "datastore1",
                ".strata-datastore",
                "/tmp/x",
            ],
            "hidden",
        ),
        (vec!["datastore", "ls", "nope"], "not found"),
    ] {
        let o = strata(&lab, &args, &[]);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(words), "{args:?}: {}", stderr(&o));
    }
    assert!(!lab
        .datastore()
        .parent()
        .unwrap()
        .join("escape.img")
        .exists());
}
