//! Response documents, rendered as JSON or XML from one tree.
//!
//! GeoReport v2 gives every response in both formats with the same field names; lists name
//! their elements in XML only (`<services><service>…`). A [`Node`] keeps fields in spec order
//! and carries the XML element name of list items, so one builder serves both formats and the
//! two can never drift apart. XML is written by hand: the documents are flat and small, and a
//! text escaper is all they need.

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The representation a client asked for with the resource's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// Splits `services.json` into `("services", Json)`. `None` when the extension is missing
    /// or not one of ours.
    pub fn split(resource: &str) -> Option<(&str, Format)> {
        let (name, ext) = resource.rsplit_once('.')?;
        let format = match ext.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "xml" => Format::Xml,
            _ => return None,
        };
        Some((name, format))
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json; charset=utf-8",
            Format::Xml => "text/xml; charset=utf-8",
        }
    }
}

/// A value of a response document.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// JSON `null`; an empty element in XML.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// A JSON array; in XML each item is an element named `item` inside the field's element.
    List {
        item: &'static str,
        items: Vec<Node>,
    },
    /// Fields in the order the spec lists them.
    Object(Vec<(&'static str, Node)>),
}

impl Node {
    pub fn text(s: impl Into<String>) -> Node {
        Node::Text(s.into())
    }

    pub fn list(item: &'static str, items: Vec<Node>) -> Node {
        Node::List { item, items }
    }

    /// `Float` for a present coordinate, `Null` otherwise.
    pub fn opt_float(v: Option<f64>) -> Node {
        v.map_or(Node::Null, Node::Float)
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Int(i) => s.serialize_i64(*i),
            Node::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Node::Float(_) => s.serialize_unit(),
            Node::Text(t) => s.serialize_str(t),
            Node::List { items, .. } => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Node::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// A whole response: the root element name (XML only) and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub root: &'static str,
    pub body: Node,
}

impl Doc {
    pub fn new(root: &'static str, body: Node) -> Self {
        Doc { root, body }
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            // Serialising this tree cannot fail (string keys, no maps with other keys); an
            // empty list is still a valid answer should it ever happen.
            Format::Json => serde_json::to_string(&self.body).unwrap_or_else(|_| "[]".into()),
            Format::Xml => {
                let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                write_element(&mut out, self.root, &self.body);
                out.push('\n');
                out
            }
        }
    }
}

fn write_element(out: &mut String, name: &str, node: &Node) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    match node {
        Node::Null => {}
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Node::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Node::Float(_) => {}
        Node::Text(t) => escape_into(out, t),
        Node::List { item, items } => {
            for i in items {
                write_element(out, item, i);
            }
        }
        Node::Object(fields) => {
            for (k, v) in fields {
                write_element(out, k, v);
            }
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Escapes text content. Characters XML 1.0 cannot carry at all (most C0 controls, lone
/// surrogates cannot occur in a `str`, U+FFFE/U+FFFF) are replaced with U+FFFD rather than
/// producing a document the client's parser rejects.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Doc {
        Doc::new(
            "services",
            Node::list(
                "service",
                vec![Node::Object(vec![
                    ("service_code", Node::text("CG-01-001")),
                    ("metadata", Node::Bool(true)),
                    ("lat", Node::Float(22.75)),
                    ("account_id", Node::Null),
                    (
                        "values",
                        Node::list("value", vec![Node::Object(vec![("key", Node::Int(1))])]),
                    ),
                ])],
            ),
        )
    }

    #[test]
    fn json_keeps_field_order() {
        assert_eq!(
            sample().render(Format::Json),
            r#"[{"service_code":"CG-01-001","metadata":true,"lat":22.75,"account_id":null,"values":[{"key":1}]}]"#
        );
    }

    #[test]
    fn xml_names_list_items() {
        assert_eq!(
            sample().render(Format::Xml),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<services><service><service_code>CG-01-001</service_code><metadata>true</metadata><lat>22.75</lat><account_id></account_id><values><value><key>1</key></value></values></service></services>\n"
        );
    }

    #[test]
    fn xml_escapes_markup_and_drops_forbidden_characters() {
        let mut s = String::new();
        escape_into(&mut s, "a<b>&\"c'\u{1}\n光明");
        assert_eq!(s, "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}\n光明");
    }

    #[test]
    fn formats_from_extensions() {
        assert_eq!(
            Format::split("services.json"),
            Some(("services", Format::Json))
        );
        assert_eq!(
            Format::split("CG-01-001.XML"),
            Some(("CG-01-001", Format::Xml))
        );
        assert_eq!(Format::split("services.html"), None);
        assert_eq!(Format::split("services"), None);
    }
}
