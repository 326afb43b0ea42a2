//! Exports and imports in the three formats trainers read: OpenAI chat JSONL, Alpaca and ShareGPT.
//! Alpaca and ShareGPT files are JSON arrays when named `.json` (their original form), JSON Lines otherwise.

use std::path::Path;

use serde_json::{Value, json};

use super::{DatasetError, Example, Message, Meta, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"messages": [{"role", "content"}]}` per line (OpenAI fine-tuning, axolotl chat_template, TRL).
    OpenAi,
    /// `{"instruction", "input", "output"}`: instruction = the system prompt, input = the user turn.
    Alpaca,
    /// `{"conversations": [{"from": "system"|"human"|"gpt", "value"}]}`.
    ShareGpt,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "openai" => Some(Format::OpenAi),
            "alpaca" => Some(Format::Alpaca),
            "sharegpt" => Some(Format::ShareGpt),
            _ => None,
        }
    }
}

fn as_array(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// The file's bytes for `examples` in `format`; an example the format cannot hold, or one `check` rejects
/// for its roles or an empty message, is an error naming it (a trainer would reject the file, or learn it).
pub fn export(examples: &[&Example], format: Format, path: &Path) -> Result<String> {
    let mut records = Vec::with_capacity(examples.len());
    for x in examples {
        if let Some((_, why)) = super::shape_problems(x).into_iter().next() {
            return Err(DatasetError::Refused(format!(
                "example {}: {why}; fix it first (`dataset check` lists every such example)",
                x.id
            )));
        }
        records.push(record(x, format)?);
    }
    if as_array(path) && format != Format::OpenAi {
        return Ok(serde_json::to_string_pretty(&records).unwrap_or_default() + "\n");
    }
    Ok(records.iter().map(|r| r.to_string() + "\n").collect())
}

fn record(x: &Example, format: Format) -> Result<Value> {
    let refuse = |why: &str| DatasetError::Refused(format!("example {}: {why}", x.id));
    Ok(match format {
        Format::OpenAi => json!({ "messages": x.messages }),
        Format::Alpaca => {
            let turns: Vec<&Message> = x.messages.iter().filter(|m| m.role != "system").collect();
            if turns.len() != 2 || turns[0].role != "user" || turns[1].role != "assistant" {
                return Err(refuse("Alpaca holds one user turn and one answer; this example has another shape"));
            }
            json!({ "instruction": x.system().unwrap_or_default(), "input": turns[0].content, "output": turns[1].content })
        }
        Format::ShareGpt => {
            let mut conv = Vec::with_capacity(x.messages.len());
            for m in &x.messages {
                let from = match m.role.as_str() {
                    "system" => "system",
                    "user" => "human",
                    "assistant" => "gpt",
                    other => return Err(refuse(&format!("role `{other}` has no ShareGPT name"))),
                };
                conv.push(json!({ "from": from, "value": m.content }));
            }
            json!({ "id": x.id, "conversations": conv })
        }
    })
}

/// Reads `path` as `format`: JSON Lines, or a JSON array (detected by its first character). Every record
/// must convert and pass `check`'s rules for one example; the first that does not is an error with its line
/// (or array index) and why.
pub fn import(path: &Path, format: Format) -> Result<Vec<Example>> {
    Ok(import_for(path, format, None)?.0)
}

/// `import` for a dataset stored against `system_prompt`: a record without a system message gets it (their
/// number is returned), a record with another one is refused, as `check` would flag it.
pub fn import_for(path: &Path, format: Format, system_prompt: Option<&str>) -> Result<(Vec<Example>, usize)> {
    import_checked(path, format, system_prompt, None)
}

/// Tokens of a whole example in the dataset lane's model, and that model's context: `check`'s length rule.
pub type LengthRule<'a> = (&'a dyn Fn(&Example) -> std::result::Result<usize, String>, usize);

/// `import_for`, also refusing a record longer than the model's context, as `check` would flag it (a record
/// whose tokens cannot be counted is left to `check`, which says so).
pub fn import_checked(
    path: &Path,
    format: Format,
    system_prompt: Option<&str>,
    length: Option<LengthRule<'_>>,
) -> Result<(Vec<Example>, usize)> {
    let bytes = crate::workspace::store::read_regular(path).map_err(|e| DatasetError::io(path, e))?;
    let name = path.display().to_string();
    // A BOM (Windows editors write one) carries nothing; JSON parsers reject it.
    let bytes = bytes.strip_prefix(crate::workspace::store::BOM).unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, byte) = crate::workspace::store::line_and_byte(bytes, e.valid_up_to());
        let value = bytes.get(e.valid_up_to()).map_or(String::new(), |b| format!(" (0x{b:02X})"));
        DatasetError::Invalid { where_: format!("{name}:{line}"), message: format!("byte {byte}{value} is not UTF-8") }
    })?;
    let mut records: Vec<(String, Value)> = Vec::new();
    if text.trim_start().starts_with('[') {
        let all: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| DatasetError::Invalid { where_: format!("{name}:{}", e.line()), message: e.to_string() })?;
        records.extend(all.into_iter().enumerate().map(|(i, v)| (format!("{name}[{i}]"), v)));
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            let v = serde_json::from_str(line)
                .map_err(|e| DatasetError::Invalid { where_: at.clone(), message: super::store::describe(&e) })?;
            records.push((at, v));
        }
    }
    let source = format!("import:{}", path.file_name().map_or(name.clone(), |n| n.to_string_lossy().into_owned()));
    let mut filled = 0;
    let mut out = Vec::with_capacity(records.len());
    for (at, v) in records {
        let invalid = |message: String| DatasetError::Invalid { where_: at.clone(), message };
        let mut messages = messages(&v, format).map_err(invalid)?;
        if let Some(system) = system_prompt {
            match messages.first() {
                Some(m) if m.role == "system" && m.content.trim() != system.trim() => {
                    return Err(invalid(format!(
                        "its system prompt differs from the one this dataset is stored against ({}); \
                         give the record that prompt or none",
                        super::check::glimpse(&m.content)
                    )));
                }
                Some(m) if m.role == "system" => {}
                _ if !system.is_empty() && !messages.is_empty() => {
                    messages.insert(0, Message::new("system", system));
                    filled += 1;
                }
                _ => {}
            }
        }
        let meta = Meta { source: Some(source.clone()), ..Meta::default() };
        let x = Example { messages, id: String::new(), meta, extra: serde_json::Map::new() };
        if let Some((_, why)) = super::shape_problems(&x).into_iter().next() {
            return Err(invalid(why));
        }
        if let Some((count, context)) = length
            && let Ok(n) = count(&x)
            && n > context
        {
            return Err(invalid(format!("{n} tokens; the model's context is {context}")));
        }
        out.push(x);
    }
    Ok((out, filled))
}

fn messages(v: &Value, format: Format) -> Result<Vec<Message>, String> {
    let text = |obj: &Value, key: &str| -> Result<String, String> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("`{key}` must be a string")),
            None => Err(format!("missing `{key}`")),
        }
    };
    match format {
        Format::OpenAi => {
            let list = v.get("messages").and_then(Value::as_array).ok_or("missing `messages` (an array)")?;
            list.iter()
                .enumerate()
                .map(|(i, m)| {
                    let role = text(m, "role").map_err(|e| format!("messages[{i}]: {e}"))?;
                    let content = text(m, "content").map_err(|e| format!("messages[{i}]: {e}"))?;
                    Ok(Message { role, content, extra: serde_json::Map::new() })
                })
                .collect()
        }
        Format::Alpaca => {
            let (instruction, output) = (text(v, "instruction")?, text(v, "output")?);
            let input = match v.get("input") {
                None | Some(Value::Null) => String::new(),
                Some(_) => text(v, "input")?,
            };
            // With no separate input, the instruction is what the user asked.
            let mut out = Vec::with_capacity(3);
            if input.is_empty() {
                out.push(Message::new("user", instruction));
            } else {
                if !instruction.is_empty() {
                    out.push(Message::new("system", instruction));
                }
                out.push(Message::new("user", input));
            }
            out.push(Message::new("assistant", output));
            Ok(out)
        }
        Format::ShareGpt => {
            let list = v.get("conversations").and_then(Value::as_array).ok_or("missing `conversations` (an array)")?;
            list.iter()
                .enumerate()
                .map(|(i, m)| {
                    let from = text(m, "from").map_err(|e| format!("conversations[{i}]: {e}"))?;
                    let role = match from.as_str() {
                        "system" => "system",
                        "human" | "user" => "user",
                        "gpt" | "assistant" | "chatgpt" | "bing" | "bard" => "assistant",
                        other => return Err(format!("conversations[{i}].from: unknown speaker `{other}`")),
                    };
                    Ok(Message::new(role, text(m, "value").map_err(|e| format!("conversations[{i}]: {e}"))?))
                })
                .collect()
        }
    }
}
