//! Splits a condition into tokens, each with the character offset it starts
//! at, so every later error can point at a column.

use super::ConditionError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Ident(String),
    Str(String),
    /// Kept as written: `3.10` must not become `3.1`.
    Num(String),
    LParen,
    RParen,
    Comma,
    Dot,
    EqEq,
    NotEq,
    AndAnd,
    OrOr,
    Bang,
}

impl Token {
    /// How the token reads in "expected …, found …".
    pub(super) fn describe(&self) -> String {
        match self {
            Token::Ident(name) => format!("`{name}`"),
            Token::Str(text) => format!("the string '{text}'"),
            Token::Num(text) => format!("the number {text}"),
            Token::LParen => "`(`".into(),
            Token::RParen => "`)`".into(),
            Token::Comma => "`,`".into(),
            Token::Dot => "`.`".into(),
            Token::EqEq => "`==`".into(),
            Token::NotEq => "`!=`".into(),
            Token::AndAnd => "`&&`".into(),
            Token::OrOr => "`||`".into(),
            Token::Bang => "`!`".into(),
        }
    }
}

/// A token and the character offset where it starts.
pub(super) type Spanned = (Token, usize);

pub(super) fn tokens(text: &str) -> Result<Vec<Spanned>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let two = chars.get(i + 1).copied();
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Token::LParen,
            ')' => Token::RParen,
            ',' => Token::Comma,
            '.' if !two.is_some_and(|d| d.is_ascii_digit()) => Token::Dot,
            '=' if two == Some('=') => Token::EqEq,
            '!' if two == Some('=') => Token::NotEq,
            '&' if two == Some('&') => Token::AndAnd,
            '|' if two == Some('|') => Token::OrOr,
            '!' => Token::Bang,
            '=' | '&' | '|' => {
                let (op, hint) = match c {
                    '=' => ("==", "compare with `==`; a condition cannot assign"),
                    '&' => ("&&", "write `&&` for \"and\""),
                    _ => ("||", "write `||` for \"or\""),
                };
                return Err(ConditionError::at(
                    start,
                    format!("`{c}` is not an operator here; did you mean `{op}`?"),
                )
                .hint(hint));
            }
            '\'' => {
                let (text, end) = string(&chars, i)?;
                i = end;
                out.push((Token::Str(text), start));
                continue;
            }
            '"' => {
                return Err(ConditionError::at(start, "strings are written in single quotes")
                    .hint("write 'main', not \"main\" (YAML may need the whole condition quoted: `if: \"branch == 'main'\"`)"));
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let mut end = i + 1;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '.')
                {
                    end += 1;
                }
                let word: String = chars[i..end].iter().collect();
                if word.parse::<f64>().is_err() {
                    return Err(ConditionError::at(
                        start,
                        format!("`{word}` is not a number"),
                    ));
                }
                i = end;
                out.push((Token::Num(word), start));
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = i + 1;
                while end < chars.len()
                    && (chars[end].is_ascii_alphanumeric() || matches!(chars[end], '_' | '-'))
                {
                    end += 1;
                }
                i = end;
                out.push((Token::Ident(chars[start..end].iter().collect()), start));
                continue;
            }
            other => {
                return Err(ConditionError::at(
                    start,
                    format!("unexpected character `{other}`"),
                ));
            }
        };
        i += match token {
            Token::EqEq | Token::NotEq | Token::AndAnd | Token::OrOr => 2,
            _ => 1,
        };
        out.push((token, start));
    }
    Ok(out)
}

/// A single-quoted string starting at `open`; `''` stands for one quote.
/// Returns the text and the offset just past the closing quote.
fn string(chars: &[char], open: usize) -> Result<(String, usize), ConditionError> {
    let mut text = String::new();
    let mut i = open + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(ConditionError::at(open, "this string is never closed")
                    .hint("end it with `'`; write `''` for a quote inside it"))
            }
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                text.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((text, i + 1)),
            Some(&c) => {
                text.push(c);
                i += 1;
            }
        }
    }
}
