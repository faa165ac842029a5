//! The `packet-link` program: it runs a command on the link's server side, names the
//! way into the client side, reports what the link did when the command ends or when
//! it is stopped, and refuses bad settings with a clear error. Needs root and
//! /dev/net/tun, as the link does.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROGRAM: &str = env!("CARGO_BIN_EXE_packet-link");

#[test]
fn it_runs_the_command_on_the_server_side_and_reports_the_link_when_it_ends() {
    let output = Command::new(PROGRAM)
        .args(["--rtt", "20ms", "--loss", "1", "--", "sh", "-c", "ip -o -4 addr show link0"])
        .output()
        .expect("run packet-link");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("packet link: 20 ms round trip, 1 % loss"), "{stdout}");
    assert!(lines[0].contains("client side 10.99.0.2: nsenter --net=/proc/"), "{stdout}");
    assert!(stdout.contains("10.99.0.1"), "the command saw the server side's device: {stdout}");
    assert!(lines.last().unwrap().starts_with("packet link: 0 packets server → client (0 lost)"), "{stdout}");
}

#[test]
fn stopped_it_kills_the_command_and_still_reports() {
    let mut child =
        Command::new(PROGRAM).args(["--", "sleep", "60"]).stdout(Stdio::piped()).spawn().expect("run packet-link");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("nsenter --net="), "{first}");
    let stopped = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(5), "it took {:?} to stop", stopped.elapsed());
    assert!(status.success(), "a stop asked for is no failure: {status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.contains("packets server → client"), "{rest}");
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    for (args, reason) in [
        (&["--loss", "150", "--", "true"][..], "150 is not between 0 and 100"),
        (&["--loss", "lots", "--", "true"][..], "\"lots\" is not a number"),
        (&["--rtt", "soon", "--", "true"][..], "soon"),
        (&["--rtt", "10ms"][..], "required"),
    ] {
        let output = Command::new(PROGRAM).args(args).output().expect("run packet-link");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}

#[test]
fn a_command_that_fails_makes_it_fail() {
    let output = Command::new(PROGRAM).args(["--", "false"]).output().expect("run packet-link");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("false ended"), "{output:?}");
}
