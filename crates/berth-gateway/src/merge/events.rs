//! `GET /events` from several engines as one stream of JSON lines, ordered by time.
//!
//! Each engine sends one JSON object per line, in its own time order. The merge keeps a
//! short hold window (a watermark): the oldest buffered event goes out once every other
//! live engine either has a buffered event too (so nothing older can still come from
//! it, as its own stream is ordered) or has been quiet for [`QUIET`]. The replay burst
//! of `since=` from several engines thus comes out in time order, while a live event
//! waits at most [`QUIET`] after the last bytes of another engine, and not at all when
//! the others are idle. Lines go out as the engine sent them, byte for byte.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Body, Frame};
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

/// How long an engine must have sent nothing before the others' events stop waiting
/// for it.
pub(crate) const QUIET: Duration = Duration::from_millis(20);

/// The most bytes held per engine (queued events plus an unfinished line). A queue at
/// the cap is emitted in arrival order without waiting for the other engines, and the
/// engine is not read further until it drains; a single line longer than this ends that
/// engine's stream (dockerd's events are well under a kilobyte).
pub(crate) const SOURCE_BUFFER_CAP: usize = 1 << 20;

/// Frames read from one engine per poll, so that a fast engine cannot starve the rest.
const FRAMES_PER_POLL: usize = 32;

/// One merged stream of event lines (each ending in `\n`) from several engines' `/events`
/// bodies. It is both a [`Stream`] of lines and an HTTP [`Body`] (one data frame per
/// line, so that every event is flushed as it goes out; it never fails).
///
/// A source that ends or fails is dropped (a failure is logged); the merged stream ends
/// when every source has ended, as dockerd's does with `until`. Dropping the merge drops
/// the sources: it spawns nothing.
pub(crate) struct EventMerge<S> {
    sources: Vec<Source<S>>,
    timer: Option<Pin<Box<Sleep>>>,
    quiet: Duration,
    cap: usize,
}

/// One engine's stream and what has been read from it but not yet emitted.
struct Source<S> {
    index: usize,
    stream: Option<Pin<Box<S>>>,
    /// Bytes after the last newline seen.
    partial: BytesMut,
    queue: VecDeque<Event>,
    queued_bytes: usize,
    /// When bytes last arrived (or the merge started).
    last_activity: Instant,
}

/// One complete line and the time it is ordered by.
struct Event {
    nanos: i64,
    line: Bytes,
}

impl<S, E> EventMerge<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: fmt::Display,
{
    /// Merges the engines' `/events` byte streams (e.g. `BodyExt::into_data_stream()` of
    /// hyper's `Incoming`), in engine order, which also breaks ties between equal times.
    pub(crate) fn new(sources: Vec<S>) -> Self {
        Self::with_limits(sources, QUIET, SOURCE_BUFFER_CAP)
    }

    /// [`EventMerge::new`] with another quiet window and buffer cap.
    pub(crate) fn with_limits(sources: Vec<S>, quiet: Duration, cap: usize) -> Self {
        let now = Instant::now();
        let sources = sources
            .into_iter()
            .enumerate()
            .map(|(index, stream)| Source {
                index,
                stream: Some(Box::pin(stream)),
                partial: BytesMut::new(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                last_activity: now,
            })
            .collect();
        Self {
            sources,
            timer: None,
            quiet,
            cap,
        }
    }

    /// The source holding the oldest buffered event (the first such source on ties).
    fn oldest(&self) -> Option<usize> {
        self.sources
            .iter()
            .enumerate()
            .filter_map(|(i, source)| source.queue.front().map(|event| (event.nanos, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// When the oldest event of source `i` may go out: `None` for now, otherwise once the
    /// last live source without a buffered event has been quiet long enough.
    fn hold_until(&self, i: usize, now: Instant) -> Option<Instant> {
        if self.sources[i].queued_bytes >= self.cap {
            return None;
        }
        self.sources
            .iter()
            .enumerate()
            .filter(|(j, source)| *j != i && source.stream.is_some() && source.queue.is_empty())
            .map(|(_, source)| source.last_activity + self.quiet)
            .filter(|&quiet_at| quiet_at > now)
            .max()
    }
}

impl<S, E> Stream for EventMerge<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: fmt::Display,
{
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        // A deadline the timer has reported passed counts as passed, even if the clock
        // reads a hair earlier, so that a fired timer is never re-armed for it.
        let mut passed: Option<Instant> = None;
        loop {
            let now = passed.map_or_else(Instant::now, |at| Instant::now().max(at));
            let cap = this.cap;
            for source in &mut this.sources {
                source.read(cx, now, cap);
            }
            let Some(i) = this.oldest() else {
                return if this.sources.iter().all(|s| s.stream.is_none()) {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            };
            let Some(deadline) = this.hold_until(i, now) else {
                if let Some(line) = this.sources[i].pop() {
                    return Poll::Ready(Some(line));
                }
                continue;
            };
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            timer.as_mut().reset(deadline);
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            passed = Some(deadline);
        }
    }
}

impl<S, E> Body for EventMerge<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: fmt::Display,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.poll_next(cx)
            .map(|line| line.map(|line| Ok(Frame::data(line))))
    }

    fn is_end_stream(&self) -> bool {
        self.sources
            .iter()
            .all(|source| source.stream.is_none() && source.queue.is_empty())
    }
}

impl<S, E> Source<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: fmt::Display,
{
    /// Reads what the engine has ready (up to the cap), leaving a waker registered
    /// unless the queue is full or the per-poll frame budget ran out (then it wakes
    /// the task itself).
    fn read(&mut self, cx: &mut Context<'_>, now: Instant, cap: usize) {
        for _ in 0..FRAMES_PER_POLL {
            if self.queued_bytes >= cap {
                return;
            }
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            match stream.as_mut().poll_next(cx) {
                Poll::Pending => return,
                Poll::Ready(Some(Ok(chunk))) => {
                    self.last_activity = now;
                    self.push(chunk);
                    if self.partial.len() > cap {
                        tracing::warn!(
                            engine = self.index,
                            bytes = self.partial.len(),
                            "events: line too long, ending this engine's event stream"
                        );
                        self.partial.clear();
                        self.stream = None;
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(engine = self.index, %error, "events: engine stream failed");
                    self.end();
                }
                Poll::Ready(None) => self.end(),
            }
        }
        cx.waker().wake_by_ref();
    }

    /// Splits `chunk` into lines (engines may split or coalesce lines across frames);
    /// complete lines are sliced out of the chunk without copying when possible.
    fn push(&mut self, mut chunk: Bytes) {
        while let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
            let head = chunk.split_to(newline + 1);
            let line = if self.partial.is_empty() {
                head
            } else {
                self.partial.extend_from_slice(&head);
                self.partial.split().freeze()
            };
            self.enqueue(line);
        }
        self.partial.extend_from_slice(&chunk);
    }

    /// Drops the stream; an unterminated last line is kept only if it is a whole object.
    fn end(&mut self) {
        self.stream = None;
        if self.partial.iter().all(u8::is_ascii_whitespace) {
            self.partial.clear();
            return;
        }
        let mut line = self.partial.split();
        if serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok() {
            line.extend_from_slice(b"\n");
            self.enqueue(line.freeze());
        } else {
            tracing::debug!(
                engine = self.index,
                "events: dropping a truncated last line"
            );
        }
    }

    fn enqueue(&mut self, line: Bytes) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.queued_bytes += line.len();
        self.queue.push_back(Event {
            nanos: event_nanos(&line),
            line,
        });
    }
}

impl<S> Source<S> {
    fn pop(&mut self) -> Option<Bytes> {
        let event = self.queue.pop_front()?;
        self.queued_bytes -= event.line.len();
        Some(event.line)
    }
}

/// The time an event line is ordered by: `timeNano`, else `time` in seconds. A line
/// without either (not an event, e.g. an in-band error) sorts first.
fn event_nanos(line: &[u8]) -> i64 {
    #[derive(Deserialize)]
    struct EventTime {
        #[serde(rename = "timeNano")]
        time_nano: Option<i64>,
        time: Option<i64>,
    }
    match serde_json::from_slice::<EventTime>(line) {
        Ok(EventTime {
            time_nano: Some(nanos),
            ..
        }) => nanos,
        Ok(EventTime {
            time: Some(seconds),
            ..
        }) => seconds.saturating_mul(1_000_000_000),
        _ => i64::MIN,
    }
}

impl<S> fmt::Debug for EventMerge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.sources.iter().filter(|s| s.stream.is_some()).count();
        let queued: usize = self.sources.iter().map(|s| s.queue.len()).sum();
        f.debug_struct("EventMerge")
            .field("sources", &self.sources.len())
            .field("live", &live)
            .field("queued", &queued)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    type Sender = mpsc::UnboundedSender<Result<Bytes, String>>;

    /// An engine's `/events` body: what the test sends is what the merge reads.
    fn engine() -> (Sender, impl Stream<Item = Result<Bytes, String>>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        (
            tx,
            futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)),
        )
    }

    /// A container event line as dockerd 20.10 writes it (legacy fields included).
    fn event(nanos: i64, name: &str) -> String {
        format!(
            concat!(
                r#"{{"status":"start","id":"{name}0a24b9ad3732","from":"busybox","Type":"container","#,
                r#""Action":"start","Actor":{{"ID":"{name}0a24b9ad3732","Attributes":{{"image":"busybox","name":"{name}"}}}},"#,
                r#""scope":"local","time":{secs},"timeNano":{nanos}}}"#,
                "\n"
            ),
            name = name,
            secs = nanos / 1_000_000_000,
            nanos = nanos,
        )
    }

    fn send(tx: &Sender, text: &str) {
        tx.send(Ok(Bytes::copy_from_slice(text.as_bytes())))
            .unwrap();
    }

    const T: i64 = 1_795_903_901_000_000_000;

    #[tokio::test(start_paused = true)]
    async fn replay_bursts_come_out_in_time_order_byte_for_byte() {
        let (tx0, engine0) = engine();
        let (tx1, engine1) = engine();
        // Engine 0 coalesces three events in one frame and splits the fourth.
        let e7 = event(T + 7, "d");
        send(
            &tx0,
            &(event(T + 1, "a") + &event(T + 3, "b") + &event(T + 5, "c")),
        );
        send(&tx0, &e7[..40]);
        send(&tx0, &e7[40..]);
        // Engine 1 splits its lines everywhere, across frames.
        let burst1 = event(T + 2, "x") + &event(T + 4, "y") + &event(T + 6, "z");
        for piece in burst1.as_bytes().chunks(37) {
            tx1.send(Ok(Bytes::copy_from_slice(piece))).unwrap();
        }
        drop((tx0, tx1));
        let merged: Vec<Bytes> = StreamExt::collect(EventMerge::new(vec![engine0, engine1])).await;
        let expected: Vec<String> = [
            (1, "a"),
            (2, "x"),
            (3, "b"),
            (4, "y"),
            (5, "c"),
            (6, "z"),
            (7, "d"),
        ]
        .iter()
        .map(|&(n, name)| event(T + n, name))
        .collect();
        let merged: Vec<String> = merged
            .iter()
            .map(|line| String::from_utf8(line.to_vec()).unwrap())
            .collect();
        assert_eq!(merged, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_waits_for_a_silent_engine_only_for_the_quiet_window() {
        let (tx0, engine0) = engine();
        let (_tx1, engine1) = engine();
        let start = Instant::now();
        let mut merged = EventMerge::new(vec![engine0, engine1]);
        send(&tx0, &event(T, "a"));
        let early = tokio::time::timeout(QUIET - Duration::from_millis(1), merged.next()).await;
        assert!(early.is_err(), "emitted before engine 1 was quiet");
        let line = merged.next().await.unwrap();
        assert_eq!(line, event(T, "a"));
        assert_eq!(start.elapsed(), QUIET);

        // Both engines idle: a live event goes out at once.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = Instant::now();
        send(&tx0, &event(T + 10, "b"));
        assert_eq!(merged.next().await.unwrap(), event(T + 10, "b"));
        assert_eq!(now.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_event_arriving_within_the_window_goes_first() {
        let (tx0, engine0) = engine();
        let (tx1, engine1) = engine();
        let start = Instant::now();
        let mut merged = EventMerge::new(vec![engine0, engine1]);
        send(&tx0, &event(T + 10, "late"));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            send(&tx1, &event(T + 5, "early"));
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx1);
        });
        assert_eq!(merged.next().await.unwrap(), event(T + 5, "early"));
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        // Engine 1 spoke at 5 ms: the held event waits until it has been quiet since.
        assert_eq!(merged.next().await.unwrap(), event(T + 10, "late"));
        assert_eq!(start.elapsed(), Duration::from_millis(5) + QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_engine_neither_blocks_nor_ends_the_rest() {
        let (tx0, engine0) = engine();
        let (tx1, engine1) = engine();
        let mut merged = EventMerge::new(vec![engine0, engine1]);
        send(&tx0, &event(T + 1, "a"));
        drop(tx0);
        let now = Instant::now();
        // Engine 0's buffered event still goes out, after live engine 1's quiet window.
        assert_eq!(merged.next().await.unwrap(), event(T + 1, "a"));
        assert_eq!(now.elapsed(), QUIET);
        // Engine 1 is now the only live one: its events go out at once.
        let now = Instant::now();
        send(&tx1, &event(T + 2, "b"));
        assert_eq!(merged.next().await.unwrap(), event(T + 2, "b"));
        assert_eq!(now.elapsed(), Duration::ZERO);
        drop(tx1);
        assert!(merged.next().await.is_none());
        assert!(Body::is_end_stream(&merged));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_engine_is_dropped_with_its_unfinished_line() {
        let (tx0, engine0) = engine();
        let (tx1, engine1) = engine();
        let mut merged = EventMerge::new(vec![engine0, engine1]);
        send(&tx0, &event(T + 1, "a"));
        send(&tx0, r#"{"status":"die","id":"0a24"#);
        tx0.send(Err("connection reset by peer".into())).unwrap();
        send(&tx1, &event(T + 2, "b"));
        assert_eq!(merged.next().await.unwrap(), event(T + 1, "a"));
        assert_eq!(merged.next().await.unwrap(), event(T + 2, "b"));
        // Engine 0 is gone (nothing more is read from it); engine 1 still counts.
        assert!(tx0.is_closed());
        let pending = tokio::time::timeout(Duration::from_secs(1), merged.next()).await;
        assert!(pending.is_err(), "the merge ended while engine 1 is live");
        drop(tx1);
        assert!(merged.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_last_object_without_newline_is_kept_and_terminated() {
        let (tx0, engine0) = engine();
        let line = event(T, "a");
        send(&tx0, line.trim_end());
        drop(tx0);
        let merged: Vec<Bytes> = StreamExt::collect(EventMerge::new(vec![engine0])).await;
        assert_eq!(merged, [Bytes::from(line)]);
    }

    #[tokio::test(start_paused = true)]
    async fn events_with_only_seconds_order_by_time_then_engine() {
        let line = |secs: i64, id: &str| {
            format!(
                r#"{{"status":"create","id":"{id}","Type":"container","Action":"create","time":{secs}}}"#
            ) + "\n"
        };
        let (tx0, engine0) = engine();
        let (tx1, engine1) = engine();
        send(&tx0, &(line(10, "a") + &line(12, "b")));
        send(&tx1, &(line(10, "x") + &line(11, "y")));
        drop((tx0, tx1));
        let merged: Vec<Bytes> = StreamExt::collect(EventMerge::new(vec![engine0, engine1])).await;
        let expected: Vec<Bytes> = [line(10, "a"), line(10, "x"), line(11, "y"), line(12, "b")]
            .into_iter()
            .map(Bytes::from)
            .collect();
        assert_eq!(merged, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_goes_out_in_arrival_order_without_waiting() {
        let (tx0, engine0) = engine();
        let (_tx1, engine1) = engine();
        let one = event(T, "a").len();
        // Room for two events: the third one read puts engine 0 over the cap.
        let mut merged = EventMerge::with_limits(vec![engine0, engine1], QUIET, 2 * one + 1);
        for n in 0..6 {
            send(&tx0, &event(T + n, "a"));
        }
        let now = Instant::now();
        let first = merged.next().await.unwrap();
        assert_eq!(first, event(T, "a"));
        assert_eq!(now.elapsed(), Duration::ZERO, "a full buffer waited");
        // Below the cap again, the rest wait for engine 1's quiet window as usual.
        let mut rest = Vec::new();
        while rest.len() < 5 {
            rest.push(merged.next().await.unwrap());
        }
        let expected: Vec<Bytes> = (1..6).map(|n| Bytes::from(event(T + n, "a"))).collect();
        assert_eq!(rest, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_longer_than_the_cap_ends_that_engine() {
        let (tx0, engine0) = engine();
        let (tx1, engine1) = engine();
        let mut merged = EventMerge::with_limits(vec![engine0, engine1], QUIET, 64);
        send(&tx0, &"x".repeat(100));
        send(&tx1, &event(T, "b"));
        drop(tx1);
        assert_eq!(merged.next().await.unwrap(), event(T, "b"));
        assert!(merged.next().await.is_none());
        assert!(tx0.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_merge_drops_every_engine_stream() {
        let (tx0, engine0) = engine();
        let (tx1, engine1) = engine();
        let mut merged = EventMerge::new(vec![engine0, engine1]);
        send(&tx0, &event(T, "a"));
        let _ = tokio::time::timeout(Duration::from_millis(1), merged.next()).await;
        drop(merged);
        assert!(tx0.is_closed());
        assert!(tx1.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn as_a_body_every_event_is_its_own_data_frame() {
        let body = |lines: Vec<String>| {
            futures_util::stream::iter(
                lines
                    .into_iter()
                    .map(|line| Ok::<_, std::io::Error>(Bytes::from(line))),
            )
        };
        let mut merged = EventMerge::new(vec![
            body(vec![event(T + 1, "a"), event(T + 3, "c")]),
            body(vec![event(T + 2, "b")]),
        ]);
        let mut frames = Vec::new();
        while let Some(frame) = merged.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        let expected: Vec<Bytes> = [(1, "a"), (2, "b"), (3, "c")]
            .iter()
            .map(|&(n, name)| Bytes::from(event(T + n, name)))
            .collect();
        assert_eq!(frames, expected);
        assert!(merged.is_end_stream());
    }
}
