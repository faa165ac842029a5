//! The link's schedule, step by step, on tokio's paused clock over in-memory pipes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::time::Instant;

use super::*;

const RTT: Duration = Duration::from_millis(200);

/// A connection whose server end is wrapped in `link`: returns the client's end (a
/// plain pipe standing for the client's socket) and the server application's end.
fn server_side(link: Link) -> (DuplexStream, DuplexStream) {
    let (client, server_socket) = duplex(1 << 20);
    (client, link.wrap(server_socket, Side::Server))
}

async fn read_exactly(stream: &mut DuplexStream, len: usize) -> Vec<u8> {
    let mut buffer = vec![0; len];
    stream.read_exact(&mut buffer).await.expect("the bytes arrive");
    buffer
}

#[tokio::test(start_paused = true)]
async fn the_first_request_waits_for_the_handshake_then_each_way_takes_half_the_round_trip() {
    let (mut client, mut server) = server_side(Link::with_rtt(RTT));
    let opened = Instant::now();
    client.write_all(b"GET").await.unwrap();
    assert_eq!(read_exactly(&mut server, 3).await, b"GET");
    // One RTT to connect, then half of one for the request.
    assert_eq!(opened.elapsed(), RTT + RTT / 2);

    let answered = Instant::now();
    server.write_all(b"200").await.unwrap();
    assert_eq!(read_exactly(&mut client, 3).await, b"200");
    assert_eq!(answered.elapsed(), RTT / 2);

    // Later requests pay the one-way delay only.
    let asked = Instant::now();
    client.write_all(b"again").await.unwrap();
    assert_eq!(read_exactly(&mut server, 5).await, b"again");
    assert_eq!(asked.elapsed(), RTT / 2);
}

#[tokio::test(start_paused = true)]
async fn on_the_client_side_the_outgoing_bytes_wait_for_the_handshake() {
    let (client_socket, mut server) = duplex(1 << 20);
    let mut client = Link::with_rtt(RTT).wrap(client_socket, Side::Client);
    let opened = Instant::now();
    client.write_all(b"hello").await.unwrap();
    assert_eq!(read_exactly(&mut server, 5).await, b"hello");
    assert_eq!(opened.elapsed(), RTT + RTT / 2);
    let answered = Instant::now();
    server.write_all(b"hi").await.unwrap();
    assert_eq!(read_exactly(&mut client, 2).await, b"hi");
    assert_eq!(answered.elapsed(), RTT / 2);
}

#[tokio::test(start_paused = true)]
async fn chunks_sent_back_to_back_are_in_flight_together() {
    let (mut client, mut server) = server_side(Link::with_rtt(RTT));
    client.write_all(b"x").await.unwrap();
    read_exactly(&mut server, 1).await;
    // A burst written over 50 ms arrives over 50 ms, one delay later: not one delay
    // per chunk.
    let start = Instant::now();
    for i in 0..5u8 {
        server.write_all(&[i]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(read_exactly(&mut client, 1).await, [0]);
    assert_eq!(start.elapsed(), RTT / 2);
    assert_eq!(read_exactly(&mut client, 4).await, [1, 2, 3, 4]);
    assert_eq!(start.elapsed(), RTT / 2 + Duration::from_millis(40));
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_chunks_by_up_to_its_amount_and_never_reorders_them() {
    let jitter = Duration::from_millis(100);
    let (mut client, mut server) = server_side(Link { jitter, ..Link::with_rtt(RTT) });
    client.write_all(b"x").await.unwrap();
    read_exactly(&mut server, 1).await;
    let start = Instant::now();
    for i in 0..100u8 {
        server.write_all(&[i]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let received = read_exactly(&mut client, 100).await;
    assert_eq!(received, (0..100).collect::<Vec<u8>>(), "byte order is kept");
    let took = start.elapsed();
    assert!(took >= RTT / 2 + Duration::from_millis(99), "{took:?}");
    assert!(took <= RTT / 2 + Duration::from_millis(99) + jitter, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_bandwidth_cap_sends_bytes_one_after_another_at_the_rate_with_their_headers() {
    let rate: Rate = "80kbit".parse().unwrap(); // 10,000 bytes a second
    let (mut client, mut server) = server_side(Link { down: Some(rate), ..Link::default() });
    client.write_all(b"x").await.unwrap();
    read_exactly(&mut server, 1).await;
    let start = Instant::now();
    // 10 full segments: 14,480 bytes and 520 bytes of headers, 1.5 s at 10,000 B/s.
    server.write_all(&vec![7; 14_480]).await.unwrap();
    // The first segment arrives once it is through, not with the last.
    read_exactly(&mut client, 1448).await;
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    read_exactly(&mut client, 14_480 - 1448).await;
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn the_end_of_a_stream_arrives_after_the_bytes_before_it() {
    let (mut client, mut server) = server_side(Link::with_rtt(RTT));
    client.write_all(b"bye").await.unwrap();
    client.shutdown().await.unwrap();
    let mut everything = Vec::new();
    server.read_to_end(&mut everything).await.unwrap();
    assert_eq!(everything, b"bye");
}

#[test]
fn rates_are_read_in_tc_units_and_shown_for_people() {
    for (text, bits, shown) in [
        ("1mbit", 1_000_000, "1 Mbit/s"),
        ("400kbit", 400_000, "400 kbit/s"),
        ("1.5Mbit", 1_500_000, "1.5 Mbit/s"),
        ("2gbit", 2_000_000_000, "2 Gbit/s"),
        ("9600bit", 9_600, "9.6 kbit/s"),
    ] {
        let rate: Rate = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(rate.bits_per_second(), bits, "{text}");
        assert_eq!(rate.to_string(), shown, "{text}");
    }
    for bad in ["", "fast", "1", "1mb", "0kbit", "-1mbit", "1.2.3mbit", "mbit"] {
        let error = bad.parse::<Rate>().unwrap_err();
        assert!(error.to_string().contains("1mbit"), "{bad}: {error}");
    }
}

#[test]
fn a_link_describes_itself_for_people() {
    assert_eq!(Link::with_rtt(Duration::from_millis(300)).to_string(), "300 ms RTT");
    assert_eq!(Link::with_rtt(Duration::from_micros(562_500)).to_string(), "562.5 ms RTT");
    let slow = Link {
        rtt: Duration::from_millis(2000),
        jitter: Duration::from_millis(20),
        down: Some("1mbit".parse().unwrap()),
        up: Some("500kbit".parse().unwrap()),
    };
    assert_eq!(slow.to_string(), "2000 ms RTT, jitter up to 20 ms, 1 Mbit/s down, 500 kbit/s up");
    let even = Link { down: Some("1mbit".parse().unwrap()), up: Some("1mbit".parse().unwrap()), ..Link::default() };
    assert_eq!(even.to_string(), "0 ms RTT, 1 Mbit/s each way");
}

#[test]
fn durations_are_read_as_people_write_them() {
    assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    for bad in ["", "fast", "100", "-5ms"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}
