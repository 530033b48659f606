//! `${env:VAR}` / `${VAR}` substitution (with `:-default`), done on the text before YAML
//! parsing so that line numbers in later errors still point into the user's file.

/// What substitution found wrong or worth a warning.
#[derive(Debug, Default)]
pub struct Substituted {
    pub text: String,
    /// Variables that were referenced but not set (and had no default): replaced by "".
    pub unset: Vec<String>,
}

/// Replaces `${env:NAME}`, `${NAME}`, `${env:NAME:-default}` and `$$` (a literal `$`).
/// Whole-line comments are left alone. `lookup` reads a variable (the process environment in
/// production, a map in tests).
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, (usize, String)> {
    let mut out = Substituted::default();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.text.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.text.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.text.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body
                    .find('}')
                    .ok_or_else(|| (i + 1, format!("unclosed ${{ in {:?}", line.trim_end())))?;
                let expr = &body[..end];
                out.text
                    .push_str(&expand(expr, lookup, &mut out.unset).map_err(|e| (i + 1, e))?);
                rest = &body[end + 1..];
            } else {
                out.text.push('$');
                rest = after;
            }
        }
        out.text.push_str(rest);
    }
    Ok(out)
}

fn expand(
    expr: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    let var = if let Some(v) = expr.strip_prefix("env:") {
        v
    } else {
        let name_end = expr.find(':').unwrap_or(expr.len());
        if !expr[name_end..].is_empty() && !expr[name_end..].starts_with(":-") {
            return Err(format!(
                "${{{expr}}}: only the env: scheme is supported (got {:?})",
                &expr[..name_end]
            ));
        }
        expr
    };
    let (name, default) = match var.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (var, None),
    };
    if !is_name(name) {
        return Err(format!(
            "${{{expr}}}: {name:?} is not a valid environment variable name"
        ));
    }
    Ok(match (lookup(name), default) {
        (Some(v), _) => v,
        (None, Some(d)) => d.to_owned(),
        (None, None) => {
            unset.push(name.to_owned());
            String::new()
        }
    })
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn every_form_is_expanded() {
        let s = substitute(
            "a: ${env:PORT}\nb: ${PORT}\nc: ${env:NOPE:-x:1}\nd: $$5 ${NOPE}\n# ${file:x}\n",
            &env,
        )
        .unwrap();
        assert_eq!(s.text, "a: 4317\nb: 4317\nc: x:1\nd: $5 \n# ${file:x}\n");
        assert_eq!(s.unset, ["NOPE"]);
        assert_eq!(substitute("e: ${EMPTY:-d}", &env).unwrap().text, "e: ");
    }

    #[test]
    fn errors_name_the_line() {
        let (line, msg) = substitute("a: 1\nb: ${file:/x}\n", &env).unwrap_err();
        assert_eq!(line, 2);
        assert!(msg.contains("env:"), "{msg}");
        assert_eq!(substitute("a: ${env:X\n", &env).unwrap_err().0, 1);
        assert!(substitute("a: ${1X}", &env).is_err());
    }
}
