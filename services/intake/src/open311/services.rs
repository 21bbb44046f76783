//! Catalog items as GeoReport services, their attribute definitions, and the checking of
//! attributes a client submits.
//!
//! Every catalog item is a service (`service_code` = item code, `group` = major category).
//! The catalog has no per-item questionnaire yet, so attributes are derived from the grade:
//! urgent items ask whether anyone is in immediate danger (a required `singlevaluelist`) and
//! for a short description of the hazard (an optional `string`); normal items have none, and
//! their `metadata` is `false` as the spec asks.

use minyi_catalog::{Catalog, CatalogItem, Grade};
use minyi_core::petition::Violations;

use super::doc::{Doc, Node};

/// The GeoReport datatypes Minyi uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    String,
    SingleValueList,
}

impl Datatype {
    fn as_str(self) -> &'static str {
        match self {
            Datatype::String => "string",
            Datatype::SingleValueList => "singlevaluelist",
        }
    }
}

/// One question of a service definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeDef {
    pub code: &'static str,
    pub datatype: Datatype,
    pub required: bool,
    /// The question shown to the citizen (Chinese, then English).
    pub description: &'static str,
    pub datatype_description: &'static str,
    pub order: i64,
    /// `(key, name)` pairs of a list datatype.
    pub values: &'static [(&'static str, &'static str)],
}

/// Longest accepted attribute value, in characters.
pub const MAX_ATTRIBUTE_CHARS: usize = 1000;

const URGENT_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef {
        code: "immediate_danger",
        datatype: Datatype::SingleValueList,
        required: true,
        description: "现场是否有人身或财产的紧急危险？ Is anyone or any property in immediate danger?",
        datatype_description: "",
        order: 1,
        values: &[
            ("yes", "是 Yes"),
            ("no", "否 No"),
            ("unsure", "不确定 Not sure"),
        ],
    },
    AttributeDef {
        code: "hazard_detail",
        datatype: Datatype::String,
        required: false,
        description: "危险情况简述（如燃气味、电线掉落、积水深度） Briefly describe the hazard (e.g. smell of gas, fallen cable, depth of water)",
        datatype_description: "最多 1000 字 At most 1000 characters",
        order: 2,
        values: &[],
    },
];

/// The attributes of an item's service definition.
pub fn attributes_of(item: &CatalogItem) -> &'static [AttributeDef] {
    match item.grade {
        Grade::Urgent => URGENT_ATTRIBUTES,
        Grade::Normal => &[],
    }
}

fn service_node(item: &CatalogItem) -> Node {
    Node::Object(vec![
        ("service_code", Node::text(&item.code)),
        ("service_name", Node::text(&item.name)),
        ("description", Node::text(&item.description)),
        ("metadata", Node::Bool(!attributes_of(item).is_empty())),
        // Minyi creates the ticket while the client waits: no token round trip is needed.
        ("type", Node::text("realtime")),
        ("keywords", Node::text(item.keywords.join(","))),
        ("group", Node::text(&item.path[0])),
    ])
}

/// `GET services`: every item of the catalog, in catalog order.
pub fn services_doc(catalog: &Catalog) -> Doc {
    Doc::new(
        "services",
        Node::list(
            "service",
            catalog.items().iter().map(service_node).collect(),
        ),
    )
}

/// `GET services/{code}`: the item's attribute definitions.
pub fn definition_doc(item: &CatalogItem) -> Doc {
    let attributes = attributes_of(item)
        .iter()
        .map(|a| {
            Node::Object(vec![
                ("variable", Node::Bool(true)),
                ("code", Node::text(a.code)),
                ("datatype", Node::text(a.datatype.as_str())),
                ("required", Node::Bool(a.required)),
                ("datatype_description", Node::text(a.datatype_description)),
                ("order", Node::Int(a.order)),
                ("description", Node::text(a.description)),
                (
                    "values",
                    Node::list(
                        "value",
                        a.values
                            .iter()
                            .map(|(key, name)| {
                                Node::Object(vec![
                                    ("key", Node::text(*key)),
                                    ("name", Node::text(*name)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    // The spec's JSON for a definition is a single object, not a list.
    Doc::new(
        "service_definition",
        Node::Object(vec![
            ("service_code", Node::text(&item.code)),
            ("attributes", Node::list("attribute", attributes)),
        ]),
    )
}

/// The ticket title that records the client's service code: `[code] name`, cut to
/// `max_chars` characters. The title is the only free field of a ticket, and the code in
/// brackets is what [`code_from_title`] reads back.
pub fn title_for(item: &CatalogItem, max_chars: usize) -> String {
    let full = format!("[{}] {}", item.code, item.name);
    full.chars().take(max_chars).collect()
}

/// The service code recorded by [`title_for`], if the title carries one.
pub fn code_from_title(title: &str) -> Option<&str> {
    let rest = title.strip_prefix('[')?;
    let (code, _) = rest.split_once(']')?;
    (!code.is_empty() && !code.contains(char::is_whitespace)).then_some(code)
}

/// Checks submitted `attribute[code]` values against the item's definitions (when the client
/// chose a service) and turns them into lines for the petition text. Attributes the
/// definition does not know are kept as `code: value` lines: clients such as FixMyStreet send
/// extra ones (a report URL, a title) that a dispatcher may still want to read.
pub fn attribute_lines(
    item: Option<&CatalogItem>,
    submitted: &[(String, String)],
    v: &mut Violations,
) -> Vec<String> {
    let defs = item.map(attributes_of).unwrap_or(&[]);
    let mut lines = Vec::new();
    for (code, value) in submitted {
        let field = format!("attribute[{code}]");
        let value = value.trim();
        if value.chars().count() > MAX_ATTRIBUTE_CHARS {
            v.add(
                &field,
                format!("longer than {MAX_ATTRIBUTE_CHARS} characters"),
            );
            continue;
        }
        match defs.iter().find(|d| d.code == code) {
            Some(def) if def.datatype == Datatype::SingleValueList => {
                match def.values.iter().find(|(key, _)| *key == value) {
                    Some((_, name)) => lines.push(format!("{}: {name}", def.description)),
                    None if value.is_empty() && !def.required => {}
                    None => v.add(
                        &field,
                        format!(
                            "must be one of {}",
                            def.values
                                .iter()
                                .map(|(k, _)| *k)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            }
            Some(def) => {
                if !value.is_empty() {
                    lines.push(format!("{}: {value}", def.description));
                }
            }
            None if value.is_empty() => {}
            None => lines.push(format!("{code}: {value}")),
        }
    }
    for def in defs.iter().filter(|d| d.required) {
        let given = submitted
            .iter()
            .any(|(code, value)| code == def.code && !value.trim().is_empty());
        if !given {
            v.add(
                &format!("attribute[{}]", def.code),
                "is required for this service",
            );
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(grade: Grade) -> CatalogItem {
        Catalog::demo()
            .items()
            .iter()
            .find(|i| i.grade == grade)
            .cloned()
            .expect("the demo catalog has items of both grades")
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn titles_roundtrip_codes() {
        let it = item(Grade::Normal);
        let t = title_for(&it, 200);
        assert_eq!(code_from_title(&t), Some(it.code.as_str()));
        assert_eq!(code_from_title("路灯不亮"), None);
        assert_eq!(code_from_title("[] x"), None);
        assert!(title_for(&it, 5).chars().count() == 5);
    }

    #[test]
    fn urgent_items_require_the_danger_question() {
        let it = item(Grade::Urgent);
        let mut v = Violations::default();
        let lines = attribute_lines(Some(&it), &[], &mut v);
        assert!(lines.is_empty());
        assert_eq!(v.0[0].field, "attribute[immediate_danger]");

        let mut v = Violations::default();
        let lines = attribute_lines(
            Some(&it),
            &pairs(&[
                ("immediate_danger", "yes"),
                ("hazard_detail", "燃气味很重"),
                ("report_url", "https://example.org/r/1"),
            ]),
            &mut v,
        );
        assert!(v.is_empty(), "{v}");
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("是 Yes"));
        assert!(lines[1].ends_with("燃气味很重"));
        assert_eq!(lines[2], "report_url: https://example.org/r/1");

        let mut v = Violations::default();
        attribute_lines(Some(&it), &pairs(&[("immediate_danger", "maybe")]), &mut v);
        assert_eq!(v.0[0].field, "attribute[immediate_danger]");
        assert!(v.0[0].description.contains("yes, no, unsure"));
    }

    #[test]
    fn normal_items_have_no_metadata() {
        let it = item(Grade::Normal);
        assert!(attributes_of(&it).is_empty());
        let mut v = Violations::default();
        let lines = attribute_lines(Some(&it), &pairs(&[("colour", "red")]), &mut v);
        assert!(v.is_empty());
        assert_eq!(lines, ["colour: red"]);
    }
}
