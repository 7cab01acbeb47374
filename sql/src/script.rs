//! Splitting a script (a file, or SQL piped on stdin) into statements at `;`, leaving
//! semicolons inside quotes, quoted identifiers and comments alone.

/// The statements of `script`, trimmed, without their terminating `;`; empty ones dropped.
/// The last statement need not end with `;`.
pub fn split_statements(script: &str) -> Vec<String> {
    let (mut statements, rest) = split_terminated(script);
    push_statement(&mut statements, &rest);
    statements
}

/// Whether `text` is ready to run as typed in the shell: every statement in it ends with
/// `;` (outside quotes and comments), or it holds nothing but whitespace and comments.
pub fn is_complete(text: &str) -> bool {
    let (_, rest) = split_terminated(text);
    let mut unterminated = Vec::new();
    push_statement(&mut unterminated, &rest);
    unterminated.is_empty()
}

/// The statements ended by `;`, and the text after the last one.
fn split_terminated(script: &str) -> (Vec<String>, String) {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                current.push(c);
                // Inside a literal or quoted identifier; a doubled quote is an escaped one.
                while let Some(d) = chars.next() {
                    current.push(d);
                    if d == c {
                        if chars.peek() == Some(&c) {
                            current.push(chars.next().expect("peeked"));
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                // A line comment: kept up to the end of the line.
                current.push(c);
                for d in chars.by_ref() {
                    current.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                current.push(c);
                current.push(chars.next().expect("peeked"));
                let mut last = ' ';
                for d in chars.by_ref() {
                    current.push(d);
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
            }
            ';' => {
                push_statement(&mut statements, &current);
                current.clear();
            }
            _ => current.push(c),
        }
    }
    (statements, current)
}

/// Keep `text` unless it holds nothing but whitespace and comments.
fn push_statement(statements: &mut Vec<String>, text: &str) {
    let meaningful = text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with("--")
    });
    if meaningful {
        statements.push(text.trim().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_in_quotes_and_comments_do_not_split() {
        let script = "-- first\nSELECT 'a;b' AS \"x;y\";\n/* c; d */ SELECT 2 -- trailing; comment\n;\n\n-- only a comment;\n";
        assert_eq!(
            split_statements(script),
            vec![
                "-- first\nSELECT 'a;b' AS \"x;y\"",
                "/* c; d */ SELECT 2 -- trailing; comment",
            ]
        );
        assert_eq!(
            split_statements("SELECT 'it''s; fine'"),
            vec!["SELECT 'it''s; fine'"]
        );
        assert!(split_statements("  ;; \n").is_empty());
    }

    #[test]
    fn a_statement_is_complete_at_its_semicolon() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1; -- done\n"));
        assert!(is_complete("  "));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT 1;\nSELECT"));
        assert!(!is_complete("SELECT 'a;"));
        assert!(!is_complete("SELECT 1 /* ; */"));
    }
}
