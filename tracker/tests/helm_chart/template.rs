//! The subset of Helm's template language (Go `text/template` + a few Sprig functions) the chart uses, and
//! nothing more: an action outside this subset is an error, so the chart cannot silently grow beyond what
//! this test checks.
//!
//! - text and `{{ pipeline }}` actions, with the `{{-` / `-}}` whitespace trimming and `{{/* comments */}}`;
//! - `{{ if p }} … {{ else if p }} … {{ else }} … {{ end }}`, `{{ define "name" }} … {{ end }}`;
//! - pipelines `a | f x | g`, operands `.`, `.Field.chain`, `"string"`, integers, `true`/`false`,
//!   `(pipeline)`;
//! - functions `include`, `toYaml`, `indent`, `nindent`, `quote`, `default`, `required`, `fail`, `int`, `not`,
//!   `and`, `or`, `printf` (`%s`, `%v`, `%d`), `trunc`, `trimSuffix`, and `.Files.Get`;
//! - numbers of the values are float64, as in Helm (`{{ 1000000 }}` of a value prints `1e+06`: use `int`).
//!
//! Stricter than Helm where Helm is lenient in ways that hide mistakes: printing nothing (`<no value>`), a
//! map or a list (Go's `map[...]`), or a missing field is an error.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_yaml_ng::{Mapping, Value};

/// One parsed template (the body of a file or of a `define`).
type Nodes = Vec<Node>;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Output {
        pipe: Pipe,
        at: String,
    },
    If {
        branches: Vec<(Pipe, String, Nodes)>,
        otherwise: Nodes,
    },
}

type Pipe = Vec<Command>;
type Command = Vec<Operand>;

#[derive(Debug, Clone)]
enum Operand {
    /// `.` (empty) or `.A.B`.
    Field(Vec<String>),
    Str(String),
    Int(i64),
    Bool(bool),
    Ident(String),
    Sub(Pipe),
}

/// Raw pieces of a template file.
#[derive(Debug)]
enum Piece {
    Text(String),
    Action { body: String, line: usize },
}

/// Splits `src` into text and actions, applying the trim markers and dropping comments.
fn lex(src: &str, file: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next_text = false;
    let mut line = 1;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            push_text(&mut pieces, rest, trim_next_text);
            break;
        };
        let mut text = &rest[..open];
        line += text.matches('\n').count();
        let after_open = &rest[open + 2..];
        let trim_left = after_open.starts_with("- ")
            || after_open.starts_with("-\n")
            || after_open.starts_with("-\t");
        if trim_left {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
        }
        push_text(&mut pieces, text, trim_next_text);
        let body_start = if trim_left { 1 } else { 0 };
        let close =
            find_close(after_open).ok_or_else(|| format!("{file}:{line}: unclosed action"))?;
        let mut body = &after_open[body_start..close];
        let trim_right = body.ends_with(" -") || body.ends_with("\n-") || body.ends_with("\t-");
        if trim_right {
            body = &body[..body.len() - 1];
        }
        let action_line = line;
        line += body.matches('\n').count();
        let raw = body;
        let body = body.trim();
        if body.starts_with("/*") {
            // Go: `{{/* c */}}` or `{{- /* c */ -}}`, nothing else between the delimiters and the comment
            let starts = if trim_left {
                raw.starts_with(" /*")
            } else {
                raw.starts_with("/*")
            };
            let ends = if trim_right {
                raw.ends_with("*/ ")
            } else {
                raw.ends_with("*/")
            };
            if !(starts && ends) {
                return Err(format!(
                    "{file}:{action_line}: a comment is written {{{{/* … */}}}} or {{{{- /* … */ -}}}}"
                ));
            }
        } else {
            pieces.push(Piece::Action {
                body: body.to_owned(),
                line: action_line,
            });
        }
        trim_next_text = trim_right;
        rest = &after_open[close + 2..];
    }
    Ok(pieces)
}

fn push_text(pieces: &mut Vec<Piece>, text: &str, trim_start: bool) {
    let text = if trim_start {
        text.trim_start_matches([' ', '\t', '\r', '\n'])
    } else {
        text
    };
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_owned()));
    }
}

/// The index of the `}}` that closes an action, skipping string literals and comments.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = s[i + 2..].find("*/")?;
                i += 2 + end + 1;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Tokens of one action body.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(Vec<String>),
    Str(String),
    Int(i64),
    Ident(String),
    Pipe,
    Open,
    Close,
}

fn tokenize(body: &str, at: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                out.push(Token::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("{at}: unterminated string")),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some('\\') => s.push('\\'),
                                Some('"') => s.push('"'),
                                other => return Err(format!("{at}: unsupported escape {other:?}")),
                            }
                        }
                        Some(&ch) => s.push(ch),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token::Str(s));
            }
            '.' => {
                let mut parts = Vec::new();
                while chars.get(i) == Some(&'.') {
                    i += 1;
                    let start = i;
                    while chars
                        .get(i)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        i += 1;
                    }
                    if i > start {
                        parts.push(chars[start..i].iter().collect());
                    } else if !parts.is_empty() {
                        return Err(format!("{at}: empty field name"));
                    }
                }
                out.push(Token::Field(parts));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Token::Int(
                    text.parse()
                        .map_err(|e| format!("{at}: bad number {text}: {e}"))?,
                ));
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => {
                return Err(format!(
                    "{at}: `{other}` is outside the template subset this test renders"
                ));
            }
        }
    }
    Ok(out)
}

/// Parses a pipeline from tokens (all of them, or up to the matching `)`).
fn parse_pipe(tokens: &[Token], pos: &mut usize, at: &str, nested: bool) -> Result<Pipe, String> {
    let mut pipe = Vec::new();
    let mut command = Vec::new();
    while *pos < tokens.len() {
        let token = tokens[*pos].clone();
        *pos += 1;
        match token {
            Token::Pipe => {
                if command.is_empty() {
                    return Err(format!("{at}: empty command before |"));
                }
                pipe.push(std::mem::take(&mut command));
            }
            Token::Open => command.push(Operand::Sub(parse_pipe(tokens, pos, at, true)?)),
            Token::Close if nested => {
                if command.is_empty() {
                    return Err(format!("{at}: empty ()"));
                }
                pipe.push(command);
                return Ok(pipe);
            }
            Token::Close => return Err(format!("{at}: unbalanced )")),
            Token::Field(parts) => command.push(Operand::Field(parts)),
            Token::Str(s) => command.push(Operand::Str(s)),
            Token::Int(n) => command.push(Operand::Int(n)),
            Token::Ident(name) => command.push(match name.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                _ => Operand::Ident(name),
            }),
        }
    }
    if nested {
        return Err(format!("{at}: unclosed ("));
    }
    if command.is_empty() {
        return Err(format!("{at}: empty pipeline"));
    }
    pipe.push(command);
    Ok(pipe)
}

/// A template set: every `define` of every file, as Helm shares them between all files of a chart.
#[derive(Debug, Default)]
pub struct Templates {
    defines: HashMap<String, Nodes>,
    files: Vec<(String, Nodes)>,
}

/// What `{{ if }}`/`{{ define }}` blocks end with.
enum BlockEnd {
    Eof,
    End,
    Else(Option<Pipe>),
}

impl Templates {
    /// Parses `src` (named `file`), collecting its `define`s.
    pub fn add(&mut self, file: &str, src: &str) -> Result<(), String> {
        let pieces = lex(src, file)?;
        let mut pos = 0;
        let (nodes, end) = self.parse_block(&pieces, &mut pos, file)?;
        if !matches!(end, BlockEnd::Eof) {
            return Err(format!(
                "{file}: unexpected {{{{ end }}}} or {{{{ else }}}}"
            ));
        }
        self.files.push((file.to_owned(), nodes));
        Ok(())
    }

    fn parse_block(
        &mut self,
        pieces: &[Piece],
        pos: &mut usize,
        file: &str,
    ) -> Result<(Nodes, BlockEnd), String> {
        let mut nodes = Vec::new();
        while *pos < pieces.len() {
            let piece = &pieces[*pos];
            *pos += 1;
            let (body, line) = match piece {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    continue;
                }
                Piece::Action { body, line } => (body, *line),
            };
            let at = format!("{file}:{line}");
            let tokens = tokenize(body, &at)?;
            match tokens.first() {
                Some(Token::Ident(k)) if k == "end" && tokens.len() == 1 => {
                    return Ok((nodes, BlockEnd::End));
                }
                Some(Token::Ident(k)) if k == "else" => {
                    if tokens.len() == 1 {
                        return Ok((nodes, BlockEnd::Else(None)));
                    }
                    if tokens.get(1) == Some(&Token::Ident("if".into())) {
                        let mut p = 2;
                        return Ok((
                            nodes,
                            BlockEnd::Else(Some(parse_pipe(&tokens, &mut p, &at, false)?)),
                        ));
                    }
                    return Err(format!("{at}: only `else` and `else if` are supported"));
                }
                Some(Token::Ident(k)) if k == "if" => {
                    let mut p = 1;
                    let mut cond = parse_pipe(&tokens, &mut p, &at, false)?;
                    let mut branches = Vec::new();
                    loop {
                        let (then, end) = self.parse_block(pieces, pos, file)?;
                        branches.push((cond, at.clone(), then));
                        match end {
                            BlockEnd::End => {
                                nodes.push(Node::If {
                                    branches,
                                    otherwise: Vec::new(),
                                });
                                break;
                            }
                            BlockEnd::Else(Some(next)) => cond = next,
                            BlockEnd::Else(None) => {
                                let (otherwise, end) = self.parse_block(pieces, pos, file)?;
                                if !matches!(end, BlockEnd::End) {
                                    return Err(format!("{at}: `if … else` without end"));
                                }
                                nodes.push(Node::If {
                                    branches,
                                    otherwise,
                                });
                                break;
                            }
                            BlockEnd::Eof => return Err(format!("{at}: `if` without end")),
                        }
                    }
                }
                Some(Token::Ident(k)) if k == "define" => {
                    let [_, Token::Str(name)] = tokens.as_slice() else {
                        return Err(format!("{at}: define takes one string"));
                    };
                    let (body, end) = self.parse_block(pieces, pos, file)?;
                    if !matches!(end, BlockEnd::End) {
                        return Err(format!("{at}: define without end"));
                    }
                    if self.defines.insert(name.clone(), body).is_some() {
                        return Err(format!("{at}: `{name}` is defined twice"));
                    }
                }
                Some(Token::Ident(k))
                    if ["range", "with", "template", "block", "break", "continue"]
                        .contains(&k.as_str()) =>
                {
                    return Err(format!(
                        "{at}: `{k}` is outside the template subset this test renders"
                    ));
                }
                _ => {
                    let mut p = 0;
                    let pipe = parse_pipe(&tokens, &mut p, &at, false)?;
                    nodes.push(Node::Output { pipe, at });
                }
            }
        }
        Ok((nodes, BlockEnd::Eof))
    }

    /// Renders every file that does not start with `_`, as `(file, output)`.
    pub fn render_all(
        &self,
        root: &Value,
        files_dir: &PathBuf,
    ) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for (file, nodes) in &self.files {
            let base = file.rsplit('/').next().unwrap_or(file);
            if base.starts_with('_') {
                continue;
            }
            let ctx = Ctx {
                templates: self,
                files_dir,
                depth: 0,
            };
            let mut s = String::new();
            ctx.render(nodes, root, &mut s)?;
            out.push((file.clone(), s));
        }
        Ok(out)
    }
}

struct Ctx<'a> {
    templates: &'a Templates,
    files_dir: &'a PathBuf,
    depth: usize,
}

impl Ctx<'_> {
    fn render(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Output { pipe, at } => {
                    let v = self.pipe(pipe, dot, at)?;
                    out.push_str(&printed(&v).map_err(|e| format!("{at}: {e}"))?);
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mut taken = false;
                    for (cond, at, then) in branches {
                        if truthy(&self.pipe(cond, dot, at)?) {
                            self.render(then, dot, out)?;
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        self.render(otherwise, dot, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipe(&self, pipe: &Pipe, dot: &Value, at: &str) -> Result<Value, String> {
        let mut piped: Option<Value> = None;
        for command in pipe {
            piped = Some(self.command(command, dot, piped, at)?);
        }
        piped.ok_or_else(|| format!("{at}: empty pipeline"))
    }

    fn command(
        &self,
        command: &Command,
        dot: &Value,
        piped: Option<Value>,
        at: &str,
    ) -> Result<Value, String> {
        let (name, args) = match command.first() {
            Some(Operand::Ident(name)) => (name.as_str(), &command[1..]),
            Some(Operand::Field(f)) if f == &["Files", "Get"] => ("Files.Get", &command[1..]),
            Some(_) if command.len() == 1 && piped.is_none() => {
                return self.operand(&command[0], dot, at);
            }
            _ => {
                return Err(format!(
                    "{at}: only a function takes arguments or a piped value"
                ));
            }
        };
        let mut values = Vec::with_capacity(args.len() + 1);
        for a in args {
            values.push(self.operand(a, dot, at)?);
        }
        values.extend(piped);
        self.call(name, values, at)
    }

    fn operand(&self, operand: &Operand, dot: &Value, at: &str) -> Result<Value, String> {
        Ok(match operand {
            Operand::Field(path) => {
                let mut v = dot;
                for (i, key) in path.iter().enumerate() {
                    v = v
                        .as_mapping()
                        .and_then(|m| m.get(key.as_str()))
                        .ok_or_else(|| format!("{at}: .{} does not exist", path[..=i].join(".")))?;
                }
                v.clone()
            }
            Operand::Str(s) => Value::String(s.clone()),
            Operand::Int(n) => Value::Number((*n).into()),
            Operand::Bool(b) => Value::Bool(*b),
            Operand::Sub(p) => self.pipe(p, dot, at)?,
            Operand::Ident(name) => self.call(name, Vec::new(), at)?,
        })
    }

    fn call(&self, name: &str, args: Vec<Value>, at: &str) -> Result<Value, String> {
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{at}: {name} takes {n} arguments, got {}",
                    args.len()
                ))
            }
        };
        let string = |v: &Value| -> Result<String, String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("{at}: {name} wants a string, got {other:?}")),
            }
        };
        let int = |v: &Value| -> Result<usize, String> {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("{at}: {name} wants a number, got {v:?}"))
        };
        match name {
            "include" => {
                arity(2)?;
                let template = string(&args[0])?;
                let body = self
                    .templates
                    .defines
                    .get(&template)
                    .ok_or_else(|| format!("{at}: no template `{template}`"))?;
                if self.depth > 20 {
                    return Err(format!("{at}: include nested too deep"));
                }
                let inner = Ctx {
                    templates: self.templates,
                    files_dir: self.files_dir,
                    depth: self.depth + 1,
                };
                let mut s = String::new();
                inner.render(body, &args[1], &mut s)?;
                Ok(Value::String(s))
            }
            "toYaml" => {
                arity(1)?;
                let s = serde_yaml_ng::to_string(&json_numbers(&args[0]))
                    .map_err(|e| format!("{at}: {e}"))?;
                Ok(Value::String(s.trim_end_matches('\n').to_owned()))
            }
            "indent" | "nindent" => {
                arity(2)?;
                let pad = " ".repeat(int(&args[0])?);
                let text = string(&args[1])?;
                let indented = format!("{pad}{}", text.replace('\n', &format!("\n{pad}")));
                Ok(Value::String(if name == "nindent" {
                    format!("\n{indented}")
                } else {
                    indented
                }))
            }
            "quote" => {
                arity(1)?;
                Ok(Value::String(go_quote(
                    &printed(&args[0]).map_err(|e| format!("{at}: quote: {e}"))?,
                )))
            }
            "default" => {
                arity(2)?;
                let [fallback, given] = <[Value; 2]>::try_from(args).map_err(|_| at.to_owned())?;
                Ok(if truthy(&given) { given } else { fallback })
            }
            "required" => {
                arity(2)?;
                let message = string(&args[0])?;
                match &args[1] {
                    Value::Null => Err(format!("{at}: required: {message}")),
                    Value::String(s) if s.is_empty() => Err(format!("{at}: required: {message}")),
                    v => Ok(v.clone()),
                }
            }
            "fail" => {
                arity(1)?;
                Err(format!("{at}: fail: {}", string(&args[0])?))
            }
            "int" => {
                arity(1)?;
                let n = match &args[0] {
                    Value::Number(n) => n.as_f64().map(|f| f as i64),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                };
                Ok(Value::from(
                    n.ok_or_else(|| format!("{at}: int of {:?}", args[0]))?,
                ))
            }
            "not" => {
                arity(1)?;
                Ok(Value::Bool(!truthy(&args[0])))
            }
            "and" | "or" => {
                if args.len() < 2 {
                    return Err(format!("{at}: {name} takes at least 2 arguments"));
                }
                let want = name == "or";
                let last = args.len() - 1;
                for (i, v) in args.into_iter().enumerate() {
                    if truthy(&v) == want || i == last {
                        return Ok(v);
                    }
                }
                unreachable!("the loop returns at the last argument")
            }
            "printf" => {
                let (format, rest) = args
                    .split_first()
                    .ok_or_else(|| format!("{at}: printf without a format"))?;
                Ok(Value::String(
                    go_printf(&string(format)?, rest).map_err(|e| format!("{at}: {e}"))?,
                ))
            }
            "trunc" => {
                arity(2)?;
                let n = int(&args[0])?;
                Ok(Value::String(string(&args[1])?.chars().take(n).collect()))
            }
            "trimSuffix" => {
                arity(2)?;
                let suffix = string(&args[0])?;
                let s = string(&args[1])?;
                Ok(Value::String(
                    s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_owned(),
                ))
            }
            "Files.Get" => {
                arity(1)?;
                let rel = string(&args[0])?;
                if rel.split('/').any(|c| c == ".." || c.is_empty()) {
                    return Err(format!(
                        "{at}: .Files.Get reads only inside the chart: {rel}"
                    ));
                }
                let path = self.files_dir.join(&rel);
                // Helm returns "" for a missing file; a missing file here is a broken chart.
                std::fs::read_to_string(&path)
                    .map(Value::String)
                    .map_err(|e| format!("{at}: .Files.Get {rel}: {e}"))
            }
            other => Err(format!(
                "{at}: function `{other}` is outside the template subset this test renders"
            )),
        }
    }
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(t) => truthy(&t.value),
    }
}

/// How `{{ v }}` prints a value; nothing, a map or a list is an error.
fn printed(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(match n.as_f64() {
            Some(f) if n.is_f64() => go_float(f),
            _ => n.to_string(),
        }),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("prints <no value> (a value that is null or missing)".into()),
        other => Err(format!(
            "prints a map or list directly (use toYaml): {other:?}"
        )),
    }
}

/// Go's `%v` of a float64: the shortest digits, in exponent form from 1e+06 on (or below 1e-04). Helm
/// reads every number of the values as a float64, so `{{ .Values.n }}` of 1000000 prints `1e+06`.
fn go_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return format!("{f}");
    }
    let sci = format!("{f:e}"); // shortest digits: "-1.8e6", "4.5e4", "1e0"
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("exponent");
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{f}")
}

/// Numbers as Helm's `toYaml` writes them: a float64 without fraction as an integer.
fn json_numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Sequence(s) => Value::Sequence(s.iter().map(json_numbers).collect()),
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), json_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The values as Helm sees them: every number a float64.
pub fn helm_numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| v.clone(), Value::from),
        Value::Sequence(s) => Value::Sequence(s.iter().map(helm_numbers).collect()),
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), helm_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Go's `%q` for the characters a chart value may hold.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprintf` for `%s` (strings only), `%d` (integers only), `%v` (scalars) and `%%`.
fn go_printf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next().ok_or("printf: format ends with %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args.next().ok_or("printf: too few arguments")?;
        match (verb, arg) {
            ('s', Value::String(s)) => out.push_str(s),
            ('d', Value::Number(n)) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
            ('v', v) => out.push_str(&printed(v)?),
            (verb, v) => {
                return Err(format!(
                    "printf: %{verb} with {v:?} (Go prints %!{verb}(…))"
                ));
            }
        }
    }
    if args.next().is_some() {
        return Err("printf: too many arguments (Go appends %!(EXTRA …))".into());
    }
    Ok(out)
}

/// `base` with `overlay` merged in (maps merge key by key, anything else replaces), like `helm -f`.
pub fn merge(base: &Value, overlay: &Value) -> Value {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            let mut out: Mapping = b.clone();
            for (k, v) in o {
                let merged = match b.get(k) {
                    Some(existing) => merge(existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Mapping(out)
        }
        (_, o) => o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, values: &str) -> Result<String, String> {
        let mut t = Templates::default();
        t.add("t.yaml", src)?;
        let root: Value = serde_yaml_ng::from_str(&format!("Values:\n{}", indent_all(values)))
            .expect("test values");
        let out = t.render_all(&root, &PathBuf::from("."))?;
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    fn indent_all(s: &str) -> String {
        s.lines().map(|l| format!("  {l}\n")).collect()
    }

    #[test]
    fn trims_and_conditions_like_go() {
        let src = "a:\n  {{- if .Values.on }}\n  b: {{ .Values.x | quote }}\n  {{- else }}\n  c: 1\n  {{- end }}\n";
        assert_eq!(
            render(src, "on: true\nx: hi").expect("renders"),
            "a:\n  b: \"hi\"\n"
        );
        assert_eq!(
            render(src, "on: \"\"\nx: hi").expect("renders"),
            "a:\n  c: 1\n"
        );
        assert_eq!(
            render("{{- /* c */ -}}\n  x {{ 3 }} {{- 4 }}", "{}").expect("renders"),
            "x 34"
        );
    }

    #[test]
    fn functions_of_the_subset() {
        let src = r#"{{ define "n" }}{{ .Values.a }}-{{ default "d" .Values.e }}{{ end }}{{ include "n" . | trunc 4 | trimSuffix "-" }}|{{ toYaml .Values.m | nindent 2 }}|{{ printf "%s=%v" .Values.a .Values.n | quote }}|{{ and .Values.a .Values.e }}|{{ or .Values.e "z" }}|{{ not .Values.e }}"#;
        assert_eq!(
            render(src, "a: abc\ne: \"\"\nn: 5\nm: {k: v, l: [1]}").expect("renders"),
            "abc|\n  k: v\n  l:\n  - 1|\"abc=5\"||z|true"
        );
    }

    #[test]
    fn rejects_what_helm_would_print_badly() {
        for (src, values, wanted) in [
            ("{{ .Values.missing }}", "a: 1", "does not exist"),
            ("{{ .Values.a }}", "a: ~", "<no value>"),
            ("{{ .Values.a }}", "a: {b: 1}", "toYaml"),
            (
                "{{ range .Values.a }}{{ end }}",
                "a: []",
                "outside the template subset",
            ),
            (
                "{{ lower .Values.a }}",
                "a: x",
                "outside the template subset",
            ),
            (
                "{{ required \"set a\" .Values.a }}",
                "a: \"\"",
                "required: set a",
            ),
            ("{{ printf \"%s\" .Values.a }}", "a: 1", "printf"),
            ("{{ if .Values.a }}", "a: 1", "without end"),
            ("{{ .Values.a }", "a: 1", "unclosed"),
            ("{{ /* c */ }}", "a: 1", "a comment is written"),
        ] {
            let err = render(src, values).expect_err(src);
            assert!(err.contains(wanted), "{src}: {err}");
        }
    }

    #[test]
    fn numbers_print_like_helm() {
        let mut t = Templates::default();
        t.add("t.yaml", "{{ .Values.a }} {{ .Values.b }} {{ int .Values.b }} {{ .Values.c }} {{ quote .Values.d }}|{{ toYaml .Values }}")
            .expect("parses");
        let values: Value =
            serde_yaml_ng::from_str("a: 45000\nb: 1800000\nc: 0.5\nd: 3").expect("yaml");
        let root = Value::Mapping(Mapping::from_iter([(
            "Values".into(),
            helm_numbers(&values),
        )]));
        let out = t.render_all(&root, &PathBuf::from(".")).expect("renders");
        assert_eq!(
            out[0].1,
            "45000 1.8e+06 1800000 0.5 \"3\"|a: 45000\nb: 1800000\nc: 0.5\nd: 3"
        );
    }

    #[test]
    fn merges_values_like_helm() {
        let base: Value = serde_yaml_ng::from_str("a: {b: 1, c: 2}\nl: [1, 2]").expect("yaml");
        let over: Value = serde_yaml_ng::from_str("a: {c: 3}\nl: [9]").expect("yaml");
        let want: Value = serde_yaml_ng::from_str("a: {b: 1, c: 3}\nl: [9]").expect("yaml");
        assert_eq!(merge(&base, &over), want);
    }
}
