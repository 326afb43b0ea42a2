//! Property tests of the SSE decoder and the dialect decoders: any bytes, any split, no panic, one result.

use proptest::prelude::*;
use tunebench::engine::api::{SseDecoder, SseEvent};

fn decode_split(bytes: &[u8], cuts: &[usize]) -> (Vec<SseEvent>, bool) {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    for p in points.into_iter().chain([bytes.len()]) {
        out.extend(d.feed(&bytes[at..p]));
        at = p;
    }
    (out, d.has_partial())
}

/// Streams built from the pieces SSE is made of, so line endings, fields and BOMs meet chunk edges often.
fn sse_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"data".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"id: 1".to_vec()),
        Just(b"retry: 10".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just("é€😀".as_bytes().to_vec()),
        Just(b"{\"choices\":[]}".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b" x:y ".to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_decode_the_same_however_split(bytes in prop::collection::vec(any::<u8>(), 0..300),
                                                     cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        prop_assert_eq!(decode_split(&bytes, &cuts), decode_split(&bytes, &[]));
    }

    #[test]
    fn sse_like_streams_decode_the_same_however_split(bytes in sse_like(),
                                                      cuts in prop::collection::vec(any::<usize>(), 0..16)) {
        let whole = decode_split(&bytes, &[]);
        prop_assert_eq!(decode_split(&bytes, &cuts), whole.clone());
        // Byte by byte is the harshest split of all.
        let every: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(decode_split(&bytes, &every), whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever a server sends as an event, the dialects answer with steps or an error, never a panic.
    #[test]
    fn dialect_decoders_never_panic(event in prop_oneof![Just("message".to_string()), Just("error".to_string()),
                                                         Just("message_start".to_string()),
                                                         Just("content_block_delta".to_string()),
                                                         Just("message_delta".to_string()), "[a-z_]{0,12}"],
                                    data in prop_oneof![json_like(), ".{0,64}"]) {
        let ev = SseEvent { event, data };
        let _ = tunebench::engine::api::openai::Decoder.event(&ev);
        let _ = tunebench::engine::api::anthropic::Decoder::default().event(&ev);
    }
}

/// JSON that looks like the APIs' chunks, with fields of the wrong type and missing pieces.
fn json_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("type"),
        Just("choices"),
        Just("delta"),
        Just("content"),
        Just("usage"),
        Just("error"),
        Just("message"),
        Just("index"),
        Just("text"),
        Just("prompt_tokens"),
        Just("output_tokens"),
        Just("input_tokens"),
        Just("content_block"),
        Just("stop_reason"),
        Just("finish_reason"),
        Just("prompt_tokens_details"),
    ];
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
    .prop_map(|v| v.to_string())
}

#[test]
fn known_stream_byte_by_byte() {
    let text = "\u{feff}: hi\r\nevent: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: é\n\ndata: [DONE]\r\r";
    let every: Vec<usize> = (0..text.len()).collect();
    let (events, partial) = decode_split(text.as_bytes(), &every);
    let got: Vec<(&str, &str)> = events.iter().map(|e| (e.event.as_str(), e.data.as_str())).collect();
    assert_eq!(got, [("message_start", "{\"a\":\n1}"), ("message", "é"), ("message", "[DONE]")]);
    assert!(!partial);
}
