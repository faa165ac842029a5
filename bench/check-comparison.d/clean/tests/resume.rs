#[tokio::test]
async fn a_cursor_the_history_lost_gets_a_gap() {}
