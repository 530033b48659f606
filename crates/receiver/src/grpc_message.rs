//! A unary gRPC request's message read ahead of tonic, without copying it.
//!
//! Why: tonic's decoder copies every DATA frame into a fresh per-request buffer and then, having
//! read the 5-byte message header, reserves the message's length again in that buffer, which
//! usually moves the whole message a second time. OTLP requests are hundreds of KiB, and those
//! two copies (and the buffer twice the message's size) were ≈8% of the collector's CPU on the
//! OTLP → batch → OTLP path. A client that honours the receiver's 256 KiB frames sends such a
//! request as one DATA frame, which HTTP/2 hands over as a slice of its read buffer: the
//! message is that slice minus its header, no copy at all; a message over several frames is
//! copied once, into a buffer of exactly its size.
//!
//! Only the plain case is read ahead: an uncompressed message within the size limit that ends
//! where the bytes read so far end. Anything else (a compressed message, one too large, a body
//! that ends early, trailers first, more bytes after the message) is given back to tonic frame
//! for frame, so its answers stay tonic's. When the message was read ahead, tonic sees an empty
//! placeholder message instead and the service takes the real one from the request's
//! extensions ([`ReadAhead`]); the rest of the body (its end, trailers) still goes through tonic.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame};
use tonic::codegen::http;

/// gRPC's length-prefixed message header: a compressed flag and a big-endian length.
const HEADER: usize = 5;
/// What tonic reads in place of a message read ahead: uncompressed, zero bytes long.
const PLACEHOLDER: &[u8] = &[0; HEADER];

/// The message read ahead of tonic, carried in the request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct ReadAhead(pub(crate) Bytes);

/// Reads `req`'s first message ahead of tonic when that is the plain case (see the module
/// doc); either way the returned request's body gives tonic what it would have read.
pub(crate) async fn read_ahead<B>(req: http::Request<B>, max: usize) -> http::Request<Replay<B>>
where
    B: Body + Send + 'static,
{
    let (mut parts, body) = req.into_parts();
    let mut body = Replay {
        front: VecDeque::new(),
        rest: Some(Box::pin(body)),
    };
    if parts.headers.contains_key("grpc-encoding") {
        // Compressed (or at least announced so): tonic negotiates and decompresses.
        return http::Request::from_parts(parts, body);
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut have = 0;
    let mut need = None;
    while let Some(rest) = body.rest.as_mut() {
        let data = match std::future::poll_fn(|cx| rest.as_mut().poll_frame(cx)).await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => data.copy_to_bytes(data.remaining()),
                Err(frame) => {
                    // Trailers before a whole message.
                    body.give_back(chunks);
                    body.front.push_back(Ok(frame.map_data(|_| Bytes::new())));
                    return http::Request::from_parts(parts, body);
                }
            },
            Some(Err(e)) => {
                body.give_back(chunks);
                body.front.push_back(Err(e));
                body.rest = None;
                return http::Request::from_parts(parts, body);
            }
            None => {
                body.rest = None;
                break;
            }
        };
        have += data.len();
        chunks.push(data);
        if need.is_none() && have >= HEADER {
            let header = first_bytes::<HEADER>(&chunks);
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if header[0] != 0 || len > max {
                body.give_back(chunks);
                return http::Request::from_parts(parts, body);
            }
            need = Some(HEADER + len);
        }
        match need {
            Some(n) if have == n => {
                parts
                    .extensions
                    .insert(ReadAhead(message(chunks, n - HEADER)));
                body.front
                    .push_back(Ok(Frame::data(Bytes::from_static(PLACEHOLDER))));
                return http::Request::from_parts(parts, body);
            }
            Some(n) if have > n => {
                body.give_back(chunks);
                return http::Request::from_parts(parts, body);
            }
            _ => {}
        }
    }
    // The body ended before a whole message: tonic reports it.
    body.give_back(chunks);
    http::Request::from_parts(parts, body)
}

/// The first `N` bytes of `chunks`, which hold at least that many.
fn first_bytes<const N: usize>(chunks: &[Bytes]) -> [u8; N] {
    let mut out = [0; N];
    let mut filled = 0;
    for chunk in chunks {
        let take = (N - filled).min(chunk.len());
        out[filled..filled + take].copy_from_slice(&chunk[..take]);
        filled += take;
        if filled == N {
            break;
        }
    }
    out
}

/// The message after the header: a slice of the one chunk when it came whole, else one copy.
fn message(chunks: Vec<Bytes>, len: usize) -> Bytes {
    if let [only] = chunks.as_slice() {
        return only.slice(HEADER..);
    }
    let mut out = BytesMut::with_capacity(len);
    let mut skip = HEADER;
    for chunk in &chunks {
        let from = skip.min(chunk.len());
        skip -= from;
        out.put_slice(&chunk[from..]);
    }
    out.freeze()
}

/// The request body tonic reads after [`read_ahead`]: what was read ahead and given back (or
/// the placeholder), then the rest of the client's body.
pub(crate) struct Replay<B: Body> {
    front: VecDeque<Result<Frame<Bytes>, B::Error>>,
    /// `None` once the client's body has ended (or failed).
    rest: Option<Pin<Box<B>>>,
}

impl<B: Body> Replay<B> {
    /// Queues the data read so far for tonic, in order.
    fn give_back(&mut self, chunks: Vec<Bytes>) {
        self.front
            .extend(chunks.into_iter().map(|c| Ok(Frame::data(c))));
    }
}

// Nothing in a `Replay` is pinned in place: the client's body is boxed.
impl<B: Body> Unpin for Replay<B> {}

impl<B: Body> Body for Replay<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(front) = self.front.pop_front() {
            return Poll::Ready(Some(front));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = rest.as_mut().poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &polled {
            self.rest = None;
        }
        polled.map(|frame| {
            frame.map(|r| r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))))
        })
    }

    fn is_end_stream(&self) -> bool {
        self.front.is_empty() && self.rest.as_ref().is_none_or(|b| b.is_end_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type TestFrame = Result<Frame<Bytes>, String>;
    type TestBody = StreamBody<futures::stream::Iter<std::vec::IntoIter<TestFrame>>>;

    fn body(frames: Vec<TestFrame>) -> TestBody {
        StreamBody::new(futures::stream::iter(frames))
    }

    fn data(bytes: &[u8]) -> TestFrame {
        Ok(Frame::data(Bytes::copy_from_slice(bytes)))
    }

    fn trailers() -> TestFrame {
        let mut t = http::HeaderMap::new();
        t.insert("x-end", http::HeaderValue::from_static("1"));
        Ok(Frame::trailers(t))
    }

    /// A length-prefixed gRPC message (`flag` 0 = uncompressed).
    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn request(frames: Vec<TestFrame>) -> http::Request<TestBody> {
        http::Request::new(body(frames))
    }

    /// What tonic would read from the replayed body: its data in one piece, whether trailers
    /// came, and the error that ended it, if any.
    async fn replayed(req: http::Request<Replay<TestBody>>) -> (Vec<u8>, bool, Option<String>) {
        let mut body = req.into_body();
        let (mut bytes, mut saw_trailers) = (Vec::new(), false);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) if f.is_data() => bytes.extend_from_slice(&f.into_data().unwrap_or_default()),
                Ok(_) => saw_trailers = true,
                Err(e) => return (bytes, saw_trailers, Some(e)),
            }
        }
        assert!(body.is_end_stream());
        (bytes, saw_trailers, None)
    }

    fn message_of(req: &http::Request<Replay<TestBody>>) -> Option<Bytes> {
        req.extensions().get::<ReadAhead>().map(|r| r.0.clone())
    }

    #[tokio::test]
    async fn a_message_in_one_frame_is_a_slice_of_it() {
        let message: Vec<u8> = (0..=255).cycle().take(200_000).collect();
        let frame = Bytes::from(framed(0, &message));
        let start = frame.as_ptr() as usize;
        let req = request(vec![Ok(Frame::data(frame)), trailers()]);
        let req = read_ahead(req, 4 << 20).await;
        let got = message_of(&req).expect("read ahead");
        assert_eq!(&got[..], &message[..]);
        assert_eq!(got.as_ptr() as usize, start + HEADER, "not copied");
        assert_eq!(replayed(req).await, (PLACEHOLDER.to_vec(), true, None));
    }

    #[tokio::test]
    async fn a_message_over_several_frames_is_joined_once() {
        let message = b"spans spans spans".to_vec();
        let whole = framed(0, &message);
        // The header itself is split, as a client writing 2-byte frames would.
        let frames = vec![data(&whole[..2]), data(&whole[2..9]), data(&whole[9..])];
        let req = read_ahead(request(frames), 1024).await;
        assert_eq!(message_of(&req).as_deref(), Some(&message[..]));
        assert_eq!(replayed(req).await, (PLACEHOLDER.to_vec(), false, None));
    }

    #[tokio::test]
    async fn an_empty_message_is_read_ahead_too() {
        let req = read_ahead(request(vec![data(&framed(0, b""))]), 1024).await;
        assert_eq!(message_of(&req).as_deref(), Some(&b""[..]));
        assert_eq!(replayed(req).await.0, PLACEHOLDER.to_vec());
    }

    /// Every case tonic must see as the client sent it: (why, frames, limit).
    #[tokio::test]
    async fn anything_but_the_plain_case_is_given_back_unchanged() {
        let plain = framed(0, b"0123456789");
        let mut two = plain.clone();
        two.extend_from_slice(&framed(0, b"again"));
        let cases: Vec<(&str, Vec<TestFrame>, usize, bool)> = vec![
            (
                "compressed flag",
                vec![data(&framed(1, b"gzip bytes")), trailers()],
                1024,
                true,
            ),
            (
                "over the size limit",
                vec![data(&plain[..8]), data(&plain[8..])],
                9,
                false,
            ),
            ("a second message", vec![data(&two)], 1024, false),
            (
                "ends inside the message",
                vec![data(&plain[..12])],
                1024,
                false,
            ),
            (
                "ends inside the header",
                vec![data(&plain[..3])],
                1024,
                false,
            ),
            ("empty body", vec![], 1024, false),
            (
                "trailers before the end",
                vec![data(&plain[..12]), trailers()],
                1024,
                true,
            ),
        ];
        for (why, frames, max, with_trailers) in cases {
            let sent: Vec<u8> = frames
                .iter()
                .filter_map(|f| f.as_ref().ok()?.data_ref().map(|d| d.to_vec()))
                .flatten()
                .collect();
            let req = read_ahead(request(frames), max).await;
            assert!(message_of(&req).is_none(), "{why}: read ahead");
            assert_eq!(replayed(req).await, (sent, with_trailers, None), "{why}");
        }
    }

    #[tokio::test]
    async fn an_announced_encoding_leaves_the_body_unread() {
        let mut req = request(vec![data(&framed(0, b"plain after all"))]);
        req.headers_mut()
            .insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        let req = read_ahead(req, 1024).await;
        assert!(message_of(&req).is_none());
        assert_eq!(replayed(req).await.0, framed(0, b"plain after all"));
    }

    #[tokio::test]
    async fn a_body_error_is_passed_on_after_the_data_read() {
        let plain = framed(0, b"0123456789");
        let frames = vec![
            data(&plain[..7]),
            Err("reset".to_owned()),
            data(&plain[7..]),
        ];
        let req = read_ahead(request(frames), 1024).await;
        assert!(message_of(&req).is_none());
        let (bytes, _, error) = replayed(req).await;
        assert_eq!(
            (bytes, error),
            (plain[..7].to_vec(), Some("reset".to_owned()))
        );
    }
}
