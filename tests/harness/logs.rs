//! routerd's log as a test reads it: the child's stdout and stderr pumped line by line into a
//! shared list (ANSI colours stripped, each line tagged), and the lines grouped into records.

use super::*;

/// Remove ANSI escape sequences (in case the logger colours its output).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Read lines from `pipe` into `sink` (prefixed with `tag`) on a background thread.
pub(super) fn pump_lines(
    pipe: impl Read + Send + 'static,
    tag: &'static str,
    sink: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let line = strip_ansi(String::from_utf8_lossy(&line).trim_end());
            if let Ok(mut lines) = sink.lock() {
                lines.push(format!("[{tag}] {line}"));
            }
        }
    })
}

pub(super) fn lock_lines(lines: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    lines.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Whether a tagged log line (`[err] ...`) starts a new event: routerd's log lines begin with an
/// RFC 3339 timestamp (`2026-01-02T03:04:05...`).
fn starts_record(line: &str) -> bool {
    let text = line
        .split_once("] ")
        .map_or(line, |(_, rest)| rest)
        .as_bytes();
    text.len() > 11
        && text[..4].iter().all(u8::is_ascii_digit)
        && text[4] == b'-'
        && text[7] == b'-'
        && text[10] == b'T'
}

/// Groups tagged log lines into events: a line that does not start with a timestamp continues
/// the previous event (joined with `\n`).
pub fn log_records(lines: &[String]) -> Vec<String> {
    let mut records: Vec<String> = Vec::new();
    for line in lines {
        match records.last_mut() {
            Some(last) if !starts_record(line) => {
                last.push('\n');
                last.push_str(
                    line.split_once("] ")
                        .map_or(line.as_str(), |(_, rest)| rest),
                );
            }
            _ => records.push(line.clone()),
        }
    }
    records
}

/// The JSON lines of a file (an access log), once there are at least `count` of them (or what
/// there is after `timeout`); lines that are not JSON are skipped.
pub async fn json_lines(path: &Path, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    wait_until(
        async || {
            docs = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            docs.len() >= count
        },
        timeout,
    )
    .await;
    docs
}
