//! Recursive descent over the tokens. Precedence, loosest first: `||`,
//! `&&`, `==`/`!=`, `!`, then literals, names, calls and parentheses — the
//! same as GitHub Actions, so conditions people already write read the same.

use super::lex::{Spanned, Token};
use super::{ConditionError, Expr};

/// Deeper nesting than any real condition; bounds the recursion so a
/// hostile `((((…` is an error, not a stack overflow.
const MAX_DEPTH: usize = 64;

pub(super) fn parse(tokens: &[Spanned], len: usize) -> Result<Expr, ConditionError> {
    let mut parser = Parser {
        tokens,
        next: 0,
        end: len,
        depth: 0,
    };
    if tokens.is_empty() {
        return Err(ConditionError::at(0, "the condition is empty")
            .hint("write an expression such as `branch == 'main'`, or remove `if:`"));
    }
    let expr = parser.or()?;
    if let Some((token, at)) = parser.peek() {
        return Err(ConditionError::at(
            at,
            format!(
                "expected `&&`, `||` or the end of the condition, found {}",
                token.describe()
            ),
        ));
    }
    Ok(expr)
}

struct Parser<'t> {
    tokens: &'t [Spanned],
    next: usize,
    /// Offset of the end of the text, for "ended too soon" errors.
    end: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<(&Token, usize)> {
        self.tokens.get(self.next).map(|(t, at)| (t, *at))
    }

    fn eat(&mut self, want: &Token) -> bool {
        if self.peek().is_some_and(|(t, _)| t == want) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.and()?;
        while self.eat(&Token::OrOr) {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.comparison()?;
        while self.eat(&Token::AndAnd) {
            left = Expr::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, ConditionError> {
        let left = self.unary()?;
        let equal = match self.peek() {
            Some((Token::EqEq, _)) => true,
            Some((Token::NotEq, _)) => false,
            _ => return Ok(left),
        };
        self.next += 1;
        let right = self.unary()?;
        if let Some((Token::EqEq | Token::NotEq, at)) = self.peek() {
            return Err(ConditionError::at(at, "comparisons cannot be chained")
                .hint("join them with `&&` or `||`, or add parentheses"));
        }
        Ok(Expr::Compare {
            equal,
            left: Box::new(left),
            right: Box::new(right),
        })
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        if self.eat(&Token::Bang) {
            return self.nested(|p| p.unary()).map(|e| Expr::Not(Box::new(e)));
        }
        self.primary()
    }

    fn nested(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<Expr, ConditionError>,
    ) -> Result<Expr, ConditionError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let at = self.peek().map_or(self.end, |(_, at)| at);
            return Err(ConditionError::at(
                at,
                format!("the condition nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let out = inner(self);
        self.depth -= 1;
        out
    }

    fn primary(&mut self) -> Result<Expr, ConditionError> {
        let Some((token, at)) = self.peek() else {
            return Err(ConditionError::at(self.end, "the condition ends too soon")
                .hint("a value, a name or a function call is missing here"));
        };
        let token = token.clone();
        self.next += 1;
        match token {
            Token::Str(text) => Ok(Expr::Str(text)),
            Token::Num(text) => Ok(Expr::Num(text)),
            Token::LParen => {
                let inner = self.nested(|p| p.or())?;
                if !self.eat(&Token::RParen) {
                    return Err(self.expected("`)` to close the `(`"));
                }
                Ok(inner)
            }
            Token::Ident(name) if self.eat(&Token::LParen) => self.call(name, at),
            Token::Ident(name) => match name.as_str() {
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                "null" => Ok(Expr::Null),
                _ => self.path(name, at),
            },
            other => Err(ConditionError::at(
                at,
                format!(
                    "expected a value, a name or a function call, found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// `env.NAME`, `matrix.KEY`, or a plain context name.
    fn path(&mut self, head: String, at: usize) -> Result<Expr, ConditionError> {
        let mut path = vec![head];
        while self.eat(&Token::Dot) {
            match self.peek() {
                Some((Token::Ident(part), _)) => {
                    path.push(part.clone());
                    self.next += 1;
                }
                _ => return Err(self.expected("a name after `.`")),
            }
        }
        Ok(Expr::Name { path, at })
    }

    fn call(&mut self, name: String, at: usize) -> Result<Expr, ConditionError> {
        let mut args = Vec::new();
        if !self.eat(&Token::RParen) {
            loop {
                args.push(self.nested(|p| p.or())?);
                if self.eat(&Token::RParen) {
                    break;
                }
                if !self.eat(&Token::Comma) {
                    return Err(self.expected("`,` or `)` in the call"));
                }
            }
        }
        Ok(Expr::Call { name, args, at })
    }

    /// "expected X, found Y" at the next token (or the end of the text).
    fn expected(&self, what: &str) -> ConditionError {
        match self.peek() {
            Some((token, at)) => {
                ConditionError::at(at, format!("expected {what}, found {}", token.describe()))
            }
            None => ConditionError::at(
                self.end,
                format!("expected {what}, found the end of the condition"),
            ),
        }
    }
}
