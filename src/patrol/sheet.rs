//! The printable sheet of an org's checkpoints: one card per checkpoint with its QR code (the
//! signed code as inline SVG, drawn by the caller's renderer: the dashboard's, which sits
//! above this module), its name, site and instructions. Styled by the bundled `/sheet.css`
//! (the pages' policy allows no inline style).

use super::error::PatrolError;
use super::records::Checkpoint;
use super::service::Patrols;
use crate::auth::Identity;

/// Text for HTML: `<`, `>`, `&` and quotes escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The sheet's HTML, `qr` drawing each code as an inline SVG.
fn render(
    org: &str,
    site: Option<&str>,
    checkpoints: &[(Checkpoint, String)],
    qr: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<String, PatrolError> {
    let title = match site {
        Some(site) => format!("Checkpoints of {} — {}", escape(org), escape(site)),
        None => format!("Checkpoints of {}", escape(org)),
    };
    let mut cards = String::new();
    for (c, code) in checkpoints {
        let svg = qr(code).ok_or_else(|| {
            PatrolError::BadRequest(format!(
                "checkpoint {}: a code too long for a QR code",
                c.id
            ))
        })?;
        cards.push_str(&format!(
            "<figure class=\"checkpoint\" data-id=\"{id}\">{svg}<figcaption><strong>{name}</strong>{site}{instructions}<code>{code}</code></figcaption></figure>\n",
            id = escape(&c.id),
            name = escape(&c.name),
            site = c
                .site
                .as_deref()
                .map(|s| format!("<span class=\"site\">{}</span>", escape(s)))
                .unwrap_or_default(),
            instructions = c
                .instructions
                .as_deref()
                .map(|s| format!("<span class=\"instructions\">{}</span>", escape(s)))
                .unwrap_or_default(),
            code = escape(code),
        ));
    }
    if checkpoints.is_empty() {
        cards.push_str("<p>No checkpoints yet.</p>\n");
    }
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <link rel=\"stylesheet\" href=\"/sheet.css\"></head>\n\
         <body class=\"sheet\"><h1>{title}</h1>\n\
         <p class=\"hint\">Scan with the Lookout guard app. These codes are valid on this Lookout only.</p>\n\
         <main class=\"cards\">\n{cards}</main></body></html>\n"
    ))
}

impl Patrols {
    /// The printable sheet of the org's checkpoints, or of one site's (supervisors, admins),
    /// with `qr` drawing each code as an inline SVG.
    pub async fn sheet(
        &self,
        who: &Identity,
        org: Option<&str>,
        site: Option<&str>,
        qr: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<String, PatrolError> {
        let org = self.managed_org(who, org)?;
        let mut all = self.coded(&org).await?;
        if let Some(site) = site {
            all.retain(|(c, _)| c.site.as_deref() == Some(site));
        }
        render(&org, site, &all, qr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }
}
