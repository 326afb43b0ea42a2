//! The fuzz targets: what each generates and which of tunebench's parsers it feeds.

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::Device;
use tunebench::dataset::{Entry, Split, parse_lines};
use tunebench::engine::api::{SseDecoder, SseEvent, anthropic, openai};
use tunebench::engine::local::{load_gguf_from, template::ChatTemplate};
use tunebench::eval::spec::Evals;
use tunebench::lora::config::AdapterConfig;

use crate::gguf;
use crate::inputs::Gen;

pub struct Target {
    pub name: &'static str,
    pub generate: fn(&mut Gen) -> Vec<u8>,
    pub run: fn(&[u8]),
}

pub fn all() -> Vec<Target> {
    vec![
        Target { name: "sse", generate: sse_gen, run: sse_run },
        Target { name: "workspace.toml", generate: ws_gen, run: ws_run },
        Target { name: "evals.toml", generate: evals_gen, run: evals_run },
        Target { name: "dataset.jsonl", generate: jsonl_gen, run: jsonl_run },
        Target { name: "adapter_config", generate: adapter_gen, run: adapter_run },
        Target { name: "chat_template", generate: template_gen, run: template_run },
        Target { name: "gguf", generate: gguf_gen, run: gguf_run },
        Target { name: "safetensors", generate: gguf::safetensors, run: safetensors_run },
    ]
}

fn example(rel: &str) -> &'static [u8] {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("workspaces/ticket-triage").join(rel);
    Box::leak(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_boxed_slice())
}

// --- SSE: a stream of lines in both providers' shapes, split anywhere ---

const SSE_LINES: &[&str] = &[
    "data: [DONE]",
    r#"data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
    r#"data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":0}}}"#,
    r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
    r#"data: {"error":{"message":"overloaded","type":"server_error"}}"#,
    "event: message_start",
    r#"data: {"type":"message_start","message":{"usage":{"input_tokens":20,"cache_read_input_tokens":5}}}"#,
    "event: content_block_delta",
    r#"data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Hello"}}"#,
    "event: message_delta",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}"#,
    "event: message_stop",
    "event: error",
    ": keep-alive",
    "data",
    "data:",
    "id: 7",
    "retry: 1000",
    "event",
    "",
    "",
    "\u{feff}data: x",
];

fn sse_gen(g: &mut Gen) -> Vec<u8> {
    let mut out = Vec::new();
    if g.chance(0.05) {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for _ in 0..g.below(12) {
        out.extend_from_slice(g.pick(SSE_LINES).as_bytes());
        out.extend_from_slice(g.word(&["\n", "\r\n", "\r", "\n\n"]).as_bytes());
    }
    if g.chance(0.7) {
        let corpus = [&out[..]];
        let dict = ["data:", "event:", "\n", "\r", "\r\n", ":", "{", "}", "\"", "[DONE]", "\u{fffd}", "\u{0}"];
        out = g.mutate(&corpus, &dict);
    }
    out
}

fn sse_run(input: &[u8]) {
    let whole = SseDecoder::new().feed(input);
    // The same bytes in random chunks must decode to the same events (the split is the network's).
    let mut d = SseDecoder::new();
    let mut split = Vec::new();
    let mut at = 0;
    let mut h = crate::inputs::hash(input);
    while at < input.len() {
        let n = 1 + (h % 7) as usize;
        h = h.rotate_left(5) ^ 0x9e37;
        let end = (at + n).min(input.len());
        split.extend(d.feed(&input[at..end]));
        at = end;
    }
    assert_eq!(whole, split, "chunking changed the events");
    let (mut o, mut a) = (openai::Decoder, anthropic::Decoder::default());
    for ev in &whole {
        let _ = o.event(ev);
        let _ = a.event(ev);
        let named = SseEvent { event: "message".into(), data: ev.data.clone() };
        let _ = a.event(&named);
    }
}

// --- workspace.toml and evals.toml: valid files mutated, token- and byte-level ---

const TOML_DICT: &[&str] = &[
    "[[lanes]]\n",
    "[models.m]\n",
    "[prompts.p]\n",
    "[pricing.\"x\"]\n",
    "[api]\n",
    "id = \"a\"\n",
    "backend = \"local\"\n",
    "backend = \"anthropic\"\n",
    "model = \"smollm2\"\n",
    "adapter = \"../x\"\n",
    "prompt = \"long\"\n",
    "max_tokens = ",
    "temperature = ",
    "top_p = ",
    "stop = [\"\\n\"]\n",
    "seed = ",
    "device = \"cuda:99999999999\"\n",
    "base_url = \"http://[::1\"\n",
    "\"",
    "'''",
    "\"\"\"",
    "=",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "\n",
    "#",
    "\\u0000",
    "\\",
    "inf",
    "nan",
    "true",
    "1979-05-27T07:32:00Z",
    "type = \"regex\"\n",
    "value = \"(a+)+$\"\n",
    "type = \"json-schema\"\n",
    "[[cases]]\n",
    "[[cases.assert]]\n",
    "threshold = ",
    "weight = ",
    "metric = \"rouge-l\"\n",
    "file = \"../../../etc/passwd\"\n",
    "fields = [\"a\"]\n",
    "value = { \"$ref\" = \"#\" }\n",
    "value = { type = \"string\", pattern = \"(a|a)*b\" }\n",
];

fn ws_gen(g: &mut Gen) -> Vec<u8> {
    static C: OnceLock<Vec<u8>> = OnceLock::new();
    let c = C.get_or_init(|| example("workspace.toml").to_vec());
    let nested =
        b"x = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]\n";
    g.mutate(&[c, nested], TOML_DICT)
}

fn ws_run(input: &[u8]) {
    let src = String::from_utf8_lossy(input);
    let root = Path::new("/nonexistent-fuzz-root");
    let _ = tunebench::workspace::parse(root, &root.join("workspace.toml"), &src);
}

fn evals_gen(g: &mut Gen) -> Vec<u8> {
    let extra = b"[[cases]]\nid = \"c1\"\n[[cases.assert]]\ntype = \"regex\"\nvalue = \"^a{2,5}$\"\n[[assert]]\ntype = \"max-latency\"\nvalue = 2.5\n[[assert]]\ntype = \"contains\"\nvalue = \"x\"\n";
    g.mutate(&[example("evals.toml"), extra], TOML_DICT)
}

fn evals_run(input: &[u8]) {
    let src = String::from_utf8_lossy(input);
    let case = tunebench::eval::Case {
        id: "c1".into(),
        input: "in".into(),
        expected: "{\"intent\":\"x\"}".into(),
        line: 1,
        hash: "h".into(),
        repeat: 0,
        tags: Vec::new(),
    };
    let _ = Evals::parse(Path::new("/nonexistent-fuzz-root/evals.toml"), &src, std::slice::from_ref(&case));
}

// --- dataset lines ---

fn jsonl_gen(g: &mut Gen) -> Vec<u8> {
    static C: OnceLock<Vec<&'static [u8]>> = OnceLock::new();
    let c = C.get_or_init(|| example("dataset/test.jsonl").split(|&b| b == b'\n').take(8).collect());
    let dict = [
        "{",
        "}",
        "[",
        "]",
        "\"",
        ",",
        ":",
        "\"messages\"",
        "\"role\"",
        "\"content\"",
        "\"id\"",
        "\"meta\"",
        "null",
        "\\u0000",
        "\\ud800",
        "\n",
        "\r\n",
        "\u{feff}",
    ];
    g.mutate(c, &dict)
}

fn jsonl_run(input: &[u8]) {
    let (entries, _) = parse_lines(input, Split::Train);
    for e in &entries {
        if let Entry::Example(x, _) = e {
            let _ = (x.system(), x.user(), x.assistant(), x.to_line(), x.pairs());
        }
    }
}

// --- adapter_config.json ---

fn adapter_gen(g: &mut Gen) -> Vec<u8> {
    let extra = br#"{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":".*\\.(q|v)_proj","rank_pattern":{"layers\\.0\\..*":2,"(a+)+$":3},"alpha_pattern":{"q_proj":16},"layers_to_transform":[0,1],"use_rslora":true}"#;
    let dict = [
        "\"r\":",
        "\"lora_alpha\":",
        "\"rank_pattern\":{",
        "\"target_modules\":",
        "\"all-linear\"",
        "\"(\"",
        "\"[\"",
        "\"(a|a)*b\"",
        "\"\\\\\"",
        "0",
        "-1",
        "null",
        "[",
        "]",
        "{",
        "}",
        ",",
    ];
    g.mutate(&[example("adapters/ticket-lora/adapter_config.json"), extra], &dict)
}

fn adapter_run(input: &[u8]) {
    let Ok(c) = AdapterConfig::parse(&String::from_utf8_lossy(input)) else { return };
    for m in [
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.mlp.down_proj",
        "lm_head",
        "model.layers.99999999999999999999.x",
    ] {
        let _ = c.targets(m);
        let _ = c.rank_and_scale(m);
    }
}

// --- chat templates: Jinja built from the pieces real templates use ---

const JINJA: &[&str] = &[
    "{% for m in messages %}",
    "{% endfor %}",
    "{% for i in range(3) %}",
    "{% for i in range(3) %}",
    "{% if add_generation_prompt %}",
    "{% if m.role == 'system' %}",
    "{% else %}",
    "{% elif loop.first %}",
    "{% endif %}",
    "{{ m.content }}",
    "{{ m.role }}",
    "{{ bos_token }}",
    "{{ eos_token }}",
    "{{ messages[0].content | trim }}",
    "{{ m.content.strip().upper() }}",
    "{{ raise_exception('no') }}",
    "{{ strftime_now('%d %b %Y') }}",
    "{% set x = 'ab' * 1000 %}",
    "{{ x }}",
    "{% set ns = namespace(n=0) %}",
    "{% set ns.n = ns.n + 1 %}",
    "{{ ns.n }}",
    "{% macro f(a) %}{{ f(a) }}{% endmacro %}{{ f(1) }}",
    "{{ messages | tojson }}",
    "{% filter upper %}",
    "{% endfilter %}",
    "{{ loop.index }}",
    "{{ 1 / 0 }}",
    "{{ range(99999999) }}",
    "<|im_start|>",
    "\n",
    "{{",
    "}}",
    "{%",
    "%}",
    "{{ messages[99] }}",
    "{{ m.content[::-1] }}",
    "{{ '%s' | format(m) }}",
    "{{ m.content | replace('a', 'bb') }}",
];

const SLOW: &[&str] = &["{% for i in range(100000) %}", "{{ 'x' * 99999999 }}"];

fn template_gen(g: &mut Gen) -> Vec<u8> {
    let mut s = String::new();
    for _ in 0..1 + g.below(10) {
        // The long loop that only fuel stops and the 100 MB string minijinja allows: rarer than the rest,
        // since each one costs a thousand ordinary inputs.
        s.push_str(if g.chance(0.01) { g.word(SLOW) } else { g.word(JINJA) });
    }
    if g.chance(0.2) {
        return g.mutate(&[s.as_bytes()], JINJA);
    }
    s.into_bytes()
}

fn template_run(input: &[u8]) {
    let src = String::from_utf8_lossy(input);
    if let Ok(t) = ChatTemplate::new(Some(&src), |_| false) {
        let _ = t.render("You are terse.", "Hello <|im_end|> there", "<s>", "</s>");
    }
}

// --- model files ---

fn gguf_gen(g: &mut Gen) -> Vec<u8> {
    static B: OnceLock<gguf::Built> = OnceLock::new();
    gguf::break_fields(g, B.get_or_init(gguf::build))
}

fn gguf_run(input: &[u8]) {
    let path = Path::new("fuzz.gguf");
    if let Ok(m) = load_gguf_from(&mut Cursor::new(input), path, &Device::Cpu, None) {
        // A model that loads must also tokenize and render without panicking.
        if let Ok(r) = m.template.render("s", "u", "<s>", "</s>") {
            let _ = m.tokenizer.encode_marked(&r.text, &r.plain);
        }
        let _ = m.tokenizer.decode(&[0, 1, 2, 3, 4, 5, 11, 12, u32::MAX]);
    }
}

fn safetensors_run(input: &[u8]) {
    let _ = candle_core::safetensors::load_buffer(input, &Device::Cpu);
}

/// The unbroken model files load: otherwise every mutation would stop at the same first error and the
/// loaders past it would never run.
pub fn check_seeds() {
    let built = gguf::build();
    let m = load_gguf_from(&mut Cursor::new(&built.bytes), Path::new("seed.gguf"), &Device::Cpu, None)
        .unwrap_or_else(|e| panic!("the seed GGUF does not load: {e}"));
    let r = m.template.render("s", "u", "<s>", "</s>").expect("the seed template renders");
    assert!(!m.tokenizer.encode_marked(&r.text, &r.plain).unwrap().is_empty());
    let mut g = Gen::new(0);
    let st = loop {
        // The unmutated draw (no field replaced, length intact) of the generator.
        let b = gguf::safetensors(&mut g);
        if let Ok(t) = candle_core::safetensors::load_buffer(&b, &Device::Cpu) {
            break t;
        }
    };
    assert_eq!(st.len(), 2);
}
