//! Console figures (a benchmark, not a test), end to end through the manager's ticket and
//! the host agent's gateway (plain VNC port, VNC authentication with the one-time password),
//! for both engines:
//! - "open console" → first full frame: ticket from the manager, TCP connect, handshake,
//!   SetPixelFormat, SetEncodings (ZRLE, CopyRect, Raw), a full FramebufferUpdateRequest and
//!   the whole update read and decoded; median of 5;
//! - frames per second while the guest changes its whole screen in a loop (qemu engine, a
//!   Debian guest on q35: the VGA text console cleared and refilled 600 times; native engine:
//!   the test guest's `fbfill 200`): FramebufferUpdates received per second with incremental
//!   requests sent back at once, how many of them covered the whole screen, and pixels per
//!   second (also as whole screens' worth per second).
//!
//! Run: `cargo bench -p strata-tests --bench console` (the native part needs /dev/kvm).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use strata_hostagent::rfb::client::Client;
use strata_hostagent::rfb::protocol::encoding;
use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_tests::{bins, boot, guest_spec, wait_console, Lab};

const ENCODINGS: &[i32] = &[encoding::ZRLE, encoding::COPY_RECT, encoding::RAW];

async fn open(c: &strata_shared::Client, vm: uuid::Uuid) -> (Client<TcpStream>, Duration) {
    let start = Instant::now();
    let t = c
        .call::<m::VmConsoleTicket>(IdParams { id: vm })
        .await
        .expect("ticket");
    let client = tokio::task::spawn_blocking(move || {
        let s = TcpStream::connect((t.vnc_host.as_str(), t.vnc_port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        let mut c = Client::handshake_with_password(s, &t.vnc_password).expect("handshake");
        c.set_native_format().unwrap();
        c.set_encodings(ENCODINGS).unwrap();
        c.request(false).unwrap();
        loop {
            let u = c.read_update().expect("update");
            let (w, h) = c.screen.size();
            if u.covers(w, h) {
                break;
            }
            c.request(false).unwrap();
        }
        c
    })
    .await
    .unwrap();
    (client, start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Counts updates while `run` changes the screen, until `done` appears on the console.
async fn frame_rate(
    c: &strata_shared::Client,
    vm: uuid::Uuid,
    command: &str,
    done: &str,
) -> (f64, f64, f64, f64, f64) {
    let (mut client, _) = open(c, vm).await;
    let (sw, sh) = client.screen.size();
    let from = strata_tests::console_size(c, vm).await;
    let closer = client.stream().try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let (w, h) = client.screen.size();
        let _ = client.request(true);
        while let Ok(u) = client.read_update() {
            let bytes: u64 = u
                .rects
                .iter()
                .map(|(r, _)| u64::from(r.w) * u64::from(r.h))
                .sum();
            if tx.send((Instant::now(), u.covers(w, h), bytes)).is_err()
                || client.request(true).is_err()
            {
                break;
            }
        }
    });
    let start = Instant::now();
    c.call::<m::VmConsoleSend>(m::ConsoleSendParams {
        id: vm,
        data: format!("{command}\n"),
    })
    .await
    .unwrap();
    wait_console(c, vm, from, done, Duration::from_secs(600))
        .await
        .unwrap();
    let end = Instant::now();
    let _ = closer.shutdown(std::net::Shutdown::Both);
    let _ = reader.join();
    let seen: Vec<_> = rx.try_iter().filter(|s| s.0 <= end).collect();
    let secs = (end - start).as_secs_f64();
    let whole = seen.iter().filter(|s| s.1).count() as f64;
    let pixels: u64 = seen.iter().map(|s| s.2).sum();
    (
        seen.len() as f64 / secs,
        whole / secs,
        pixels as f64 / secs,
        secs,
        f64::from(sw) * f64::from(sh),
    )
}

async fn report(
    c: &strata_shared::Client,
    vm: uuid::Uuid,
    engine: &str,
    command: &str,
    done: &str,
) {
    let mut times = Vec::new();
    for _ in 0..5 {
        let (_, t) = open(c, vm).await;
        times.push(t);
    }
    let (ups, whole, pixels, secs, screen) = frame_rate(c, vm, command, done).await;
    println!(
        "{engine}: open console -> first full frame median {:.1} ms (of 5: {:?}); \
         full-screen change loop ({secs:.1} s): {ups:.1} updates/s, {whole:.1} whole-screen \
         updates/s, {:.2} Mpixel/s = {:.1} screens' worth/s",
        median(times.clone()).as_secs_f64() * 1e3,
        times
            .iter()
            .map(|t| format!("{:.1}", t.as_secs_f64() * 1e3))
            .collect::<Vec<_>>(),
        pixels / 1e6,
        pixels / screen
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;

    let spec = VmSpec {
        machine: Machine::Q35,
        ..guest_spec()
    };
    let vm = lab.create_vm("bench-q35", spec).await;
    boot(c, vm).await;
    report(
        c,
        vm,
        "qemu engine (q35, Debian, VGA text)",
        "i=0; while [ $i -lt 600 ]; do i=$((i+1)); clear > /dev/tty1; seq -s ' ' 1 730 > /dev/tty1; done; echo LOOP-$((40+2))-DONE",
        "LOOP-42-DONE",
    )
    .await;
    strata_tests::power_off(c, vm).await;

    if strata_hostagent::vmm::vstate::kvm::usable() {
        let vm = lab.create_native_vm("bench-native", 1, 64).await;
        let from = 0;
        strata_tests::power_on(c, vm).await;
        wait_console(
            c,
            vm,
            from,
            strata_hostagent::vmm::TESTGUEST_READY_MARKER,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        report(
            c,
            vm,
            "native engine (test guest, 640x480 framebuffer)",
            "fbfill 200",
            "fbfill done",
        )
        .await;
        strata_tests::power_off_hard(c, vm).await;
    } else {
        println!("native engine: skipped (/dev/kvm is not usable)");
    }
}
