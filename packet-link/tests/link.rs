//! The link between two namespaces of its own: TCP and UDP cross it at the profile's
//! delay and each direction's bandwidth, its losses make kernel TCP retransmit and
//! still deliver every byte, threads that enter a side and processes started there are
//! on that side, and when it goes, its namespaces and the processes started in them go
//! too. Needs root and
//! /dev/net/tun; without them each test says so and fails, not passes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use packet_link::{CLIENT, Loss, PacketLink, Profile, SERVER};

fn link(profile: Profile) -> PacketLink {
    PacketLink::up(profile).unwrap_or_else(|e| panic!("the packet link cannot run here: {e}"))
}

#[test]
fn a_round_trip_takes_twice_the_one_way_delay() {
    let link = link(Profile { delay: Duration::from_millis(20), ..Profile::CLEAR });
    let server = link.server().run(|| UdpSocket::bind((SERVER, 7000))).expect("bind in the server namespace");
    let client = link.client().run(|| UdpSocket::bind((CLIENT, 0))).expect("bind in the client namespace");
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let echo = std::thread::spawn(move || {
        let mut buffer = [0; 64];
        let (read, from) = server.recv_from(&mut buffer).expect("the ping");
        server.send_to(&buffer[..read], from).expect("the pong");
    });
    let sent = Instant::now();
    client.send_to(b"ping", SocketAddr::from((SERVER, 7000))).unwrap();
    let mut buffer = [0; 64];
    let read = client.recv(&mut buffer).expect("the pong comes back");
    let rtt = sent.elapsed();
    assert_eq!(&buffer[..read], b"ping");
    assert!(rtt >= Duration::from_millis(40), "a round trip of {rtt:?} beat the link's 40 ms");
    echo.join().unwrap();
    let (down, up) = link.counts();
    assert_eq!((down.packets, up.packets), (1, 1), "one packet each way: {down:?} {up:?}");
}

#[test]
fn tcp_retransmits_what_the_link_loses_and_delivers_every_byte() {
    let link = link(Profile::lossy(Duration::from_millis(10), Loss::Random(0.05)));
    let listener = link.server().run(|| TcpListener::bind((SERVER, 7001))).expect("listen");
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let sender = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.write_all(&payload).expect("send");
    });
    let mut stream = link.client().run(|| TcpStream::connect((SERVER, 7001))).expect("connect across the link");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).expect("every byte");
    sender.join().unwrap();
    assert!(received == expected, "the bytes arrived intact and in order");
    let (down, _) = link.counts();
    assert!(down.lost > 0, "the link lost nothing: {down:?}");
    let retransmitted = link.server().tcp_counter("RetransSegs").expect("the server side's counters");
    assert!(retransmitted > 0, "the kernel retransmitted nothing");
}

#[test]
fn bursty_loss_averages_what_its_model_says() {
    let loss = Loss::Bursty { to_bad: 0.01, to_good: 0.25, loss_when_bad: 1.0 };
    let link = link(Profile { loss, ..Profile::CLEAR });
    let server = link.server().run(|| UdpSocket::bind((SERVER, 7002))).expect("bind");
    let client = link.client().run(|| UdpSocket::bind((CLIENT, 0))).expect("bind");
    for _ in 0..20_000 {
        client.send_to(&[0; 100], SocketAddr::from((SERVER, 7002))).unwrap();
    }
    drop(server);
    let (_, up) = link.counts();
    let share = up.lost as f64 / up.packets as f64;
    assert!((share - loss.mean()).abs() < 0.015, "lost {share:.3} of packets, the model says {:.3}", loss.mean());
}

#[test]
fn a_process_started_in_a_namespace_ends_with_the_link() {
    let link = link(Profile::CLEAR);
    let mut child = link.server().spawn("sleep", vec!["600".into()]).expect("start a process in the namespace");
    let path = link.server().path();
    assert!(std::fs::metadata(&path).is_ok(), "{path:?} enters the namespace");
    assert!(child.try_wait().expect("its state").is_none(), "the process runs while the link is up");
    drop(link);
    let started = Instant::now();
    let ended = loop {
        if let Some(status) = child.try_wait().expect("its state") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "process {} outlived the link", child.id());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!ended.success(), "killed, not finished: {ended}");
}

#[test]
fn a_thread_that_enters_the_client_side_and_the_threads_it_starts_dial_across_the_link() {
    let link = link(Profile::CLEAR);
    let listener = link.server().run(|| TcpListener::bind((SERVER, 7003))).expect("listen");
    let accepted = std::thread::spawn(move || listener.accept().map(|(_, from)| from.ip()));
    let client = link.client();
    let dialed = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                client.enter().expect("enter the client side");
                // A thread started from there is on the client side too.
                std::thread::spawn(|| TcpStream::connect((SERVER, 7003)).map(drop)).join().unwrap()
            })
            .join()
            .unwrap()
    });
    dialed.expect("10.99.0.1 is reachable from the client side only");
    assert_eq!(accepted.join().unwrap().expect("accept"), CLIENT);
}

#[test]
fn a_process_started_with_its_settings_runs_in_the_namespace() {
    let link = link(Profile::CLEAR);
    let child = link
        .server()
        .spawn_with("ip", |command| {
            command.args(["-4", "-o", "address", "show", "dev", "link0"]).stdout(std::process::Stdio::piped());
        })
        .expect("start ip in the server namespace");
    let output = child.wait_with_output().expect("its output");
    assert!(String::from_utf8_lossy(&output.stdout).contains(&SERVER.to_string()), "{output:?}");
}

#[test]
fn each_direction_has_its_own_bandwidth() {
    let link = link(Profile { down_rate: Some(500_000), up_rate: None, ..Profile::CLEAR });
    let listener = link.server().run(|| TcpListener::bind((SERVER, 7004))).expect("listen");
    let sender = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.write_all(&[7; 250_000]).expect("send");
    });
    let mut stream = link.client().run(|| TcpStream::connect((SERVER, 7004))).expect("connect");
    let started = Instant::now();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).expect("every byte");
    let took = started.elapsed();
    sender.join().unwrap();
    assert_eq!(received.len(), 250_000);
    assert!(took >= Duration::from_millis(450), "250 kB at 500 kB/s took only {took:?}");
}

#[test]
fn the_processes_a_started_process_starts_end_with_the_link_too() {
    // A parent that leaves a child behind when it is killed, as nginx's master leaves
    // its workers; the child's command line is unique to this test.
    let child_command = "sleep 600.0271";
    let link = link(Profile::CLEAR);
    let script = format!("{child_command} & wait");
    let mut parent = link.server().spawn("sh", vec!["-c".into(), script]).expect("start a shell in the namespace");
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|process| {
            let command = std::fs::read(process.path().join("cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&command).replace('\0', " ").trim_end() == child_command
        })
    };
    let started = Instant::now();
    while !running() {
        assert!(started.elapsed() < Duration::from_secs(5), "the shell never started its child");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(link);
    let dropped = Instant::now();
    while running() {
        assert!(dropped.elapsed() < Duration::from_secs(5), "a grandchild outlived the link");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!parent.wait().expect("its state").success(), "killed, not finished");
}
