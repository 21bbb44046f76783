//! Every table of the page as CSV (`GET /api/v1/dashboard/export/{table}.csv`), with Chinese
//! (default) or English headers. UTF-8 with a byte-order mark, so spreadsheet programs read
//! the Chinese correctly.

use chrono::{DateTime, Utc};
use minyi_core::clock::shanghai;

use crate::dashboard::Overview;
use crate::figures::{BreakdownRow, Mean, Rate, TicketRow};

/// The tables that can be exported.
pub const TABLES: &[&str] = &[
    "summary",
    "volume",
    "overdue",
    "at_risk",
    "arbitration_queue",
    "arbitration_outcomes",
    "league",
    "by_category",
    "by_street",
    "by_unit",
    "trend",
    "hotspots",
];

/// Header language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Lang {
        if s.eq_ignore_ascii_case("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }
}

/// A table: `(english, chinese)` headers and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<(&'static str, &'static str)>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The CSV text (with a BOM).
    pub fn to_csv(&self, lang: Lang) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
        w.write_record(self.columns.iter().map(|(en, zh)| match lang {
            Lang::En => *en,
            Lang::Zh => *zh,
        }))?;
        for r in &self.rows {
            w.write_record(r.iter().map(|c| safe_cell(c).into_owned()))?;
        }
        w.into_inner().map_err(|e| e.into_error().into())
    }
}

/// Citizens' texts end up in spreadsheets: a cell that a spreadsheet would run as a formula
/// is prefixed with `'` (numbers stay numbers).
fn safe_cell(c: &str) -> std::borrow::Cow<'_, str> {
    let formula = match c.chars().next() {
        Some('=' | '+' | '@' | '\t' | '\r') => true,
        Some('-') => c.parse::<f64>().is_err(),
        _ => false,
    };
    if formula {
        format!("'{c}").into()
    } else {
        c.into()
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| {
        t.with_timezone(&shanghai())
            .format("%Y-%m-%d %H:%M")
            .to_string()
    })
    .unwrap_or_default()
}

fn num(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn rate(r: &Rate) -> String {
    num(r.value)
}

fn ticket_rows(rows: &[TicketRow]) -> Table {
    Table {
        columns: vec![
            ("tracking_number", "工单编号"),
            ("excerpt", "诉求摘要"),
            ("category", "类别"),
            ("item", "事项"),
            ("street", "街道"),
            ("community", "社区"),
            ("lead_unit", "承办单位"),
            ("state", "状态"),
            ("clock", "时限"),
            ("due", "截止时间"),
            ("received_at", "受理时间"),
            ("used", "时限已用"),
            ("overdue_working_hours", "超期工作小时"),
        ],
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.tracking_number.clone(),
                    r.excerpt.clone(),
                    r.category.clone(),
                    r.item_name.clone(),
                    r.street_name.clone(),
                    r.community_name.clone(),
                    r.lead_unit_name.clone(),
                    r.state.clone(),
                    r.clock.clone(),
                    time(r.due),
                    time(Some(r.received_at)),
                    num(Some(r.used).filter(|u| u.is_finite())),
                    format!("{:.1}", r.overdue_working_hours),
                ]
            })
            .collect(),
    }
}

fn breakdown(rows: &[BreakdownRow], key: (&'static str, &'static str)) -> Table {
    Table {
        columns: vec![
            key,
            ("received", "受理量"),
            ("dispatched", "分拨量"),
            ("completed", "办结量"),
            ("open", "在办"),
            ("overdue", "超期"),
            ("first_dispatch_accuracy", "一次分拨准确率"),
            ("on_time_completion", "按时办结率"),
            ("satisfaction_rate", "满意率"),
        ],
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    if r.name.is_empty() {
                        "—".into()
                    } else {
                        r.name.clone()
                    },
                    r.received.to_string(),
                    r.dispatched.to_string(),
                    r.completed.to_string(),
                    r.open.to_string(),
                    r.overdue.to_string(),
                    rate(&r.first_dispatch_accuracy),
                    rate(&r.on_time_completion),
                    rate(&r.satisfaction_rate),
                ]
            })
            .collect(),
    }
}

/// The table `name` of an overview; `None` for an unknown name.
pub fn table(o: &Overview, name: &str) -> Option<Table> {
    let f = &o.figures;
    let rate_row = |key: &str, r: &Rate| {
        vec![
            key.to_owned(),
            rate(r),
            r.numerator.to_string(),
            r.denominator.to_string(),
        ]
    };
    let mean_row = |key: &str, m: &Mean| {
        vec![
            key.to_owned(),
            num(m.value),
            String::new(),
            m.count.to_string(),
        ]
    };
    let count_row =
        |key: &str, n: u64| vec![key.to_owned(), n.to_string(), String::new(), String::new()];
    Some(match name {
        "summary" => Table {
            columns: vec![
                ("figure", "指标"),
                ("value", "数值"),
                ("numerator", "分子"),
                ("denominator_or_count", "分母或样本数"),
            ],
            rows: vec![
                count_row("received", f.received),
                count_row("dispatched", f.dispatched),
                count_row("completed", f.completed),
                count_row("open", f.open),
                count_row("overdue", f.overdue),
                count_row("linked_duplicates", f.linked_duplicates),
                count_row("waiting_for_dispatcher", f.waiting_for_dispatcher),
                rate_row("first_dispatch_accuracy", &f.first_dispatch_accuracy),
                mean_row("avg_dispatch_hours", &f.avg_dispatch_hours),
                mean_row("avg_accept_hours", &f.avg_accept_hours),
                rate_row("on_time_completion", &f.on_time_completion),
                mean_row(
                    "avg_completion_working_days",
                    &f.avg_completion_working_days,
                ),
                rate_row("response_rate", &f.response_rate),
                rate_row("resolution_rate", &f.resolution_rate),
                rate_row("satisfaction_rate", &f.satisfaction_rate),
            ],
        },
        "volume" => Table {
            columns: vec![
                ("today", "今日"),
                ("this_week", "本周"),
                ("this_month", "本月"),
                ("in_range", "所选时段"),
            ],
            rows: vec![vec![
                o.volume.today.to_string(),
                o.volume.this_week.to_string(),
                o.volume.this_month.to_string(),
                o.volume.in_range.to_string(),
            ]],
        },
        "overdue" => ticket_rows(&o.overdue),
        "at_risk" => ticket_rows(&o.at_risk),
        "arbitration_queue" | "arbitration_outcomes" => {
            let rows = if name == "arbitration_queue" {
                &o.arbitration.queue
            } else {
                &o.arbitration.outcomes
            };
            Table {
                columns: vec![
                    ("tracking_number", "工单编号"),
                    ("excerpt", "诉求摘要"),
                    ("category", "类别"),
                    ("street", "街道"),
                    ("returns", "退回次数"),
                    ("source", "来源"),
                    ("reason", "争议原因"),
                    ("escalated_at", "提请时间"),
                    ("owner_unit", "裁定责任单位"),
                    ("ruling", "裁定意见"),
                    ("catalog_version", "清单版本"),
                    ("arbitrated_at", "裁定时间"),
                ],
                rows: rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.tracking_number.clone(),
                            r.excerpt.clone(),
                            r.category.clone(),
                            r.street_name.clone(),
                            r.returns.to_string(),
                            r.source.clone(),
                            r.reason.clone(),
                            time(r.escalated_at),
                            r.owner_unit_name.clone(),
                            r.ruling.clone(),
                            r.catalog_version.clone(),
                            time(r.arbitrated_at),
                        ]
                    })
                    .collect(),
            }
        }
        "league" => Table {
            columns: vec![
                ("rank", "排名"),
                ("unit_code", "单位代码"),
                ("unit", "单位"),
                ("led", "承办量"),
                ("returns", "退回"),
                ("late", "超期"),
                ("extensions", "延期"),
                ("dissatisfied", "不满意"),
                ("problems", "问题合计"),
                ("on_time_completion", "按时办结率"),
                ("satisfaction_rate", "满意率"),
            ],
            rows: o
                .league
                .iter()
                .map(|r| {
                    vec![
                        r.rank.to_string(),
                        r.unit.clone(),
                        r.unit_name.clone(),
                        r.led.to_string(),
                        r.returns.to_string(),
                        r.late.to_string(),
                        r.extensions.to_string(),
                        r.dissatisfied.to_string(),
                        r.problems.to_string(),
                        rate(&r.on_time_completion),
                        rate(&r.satisfaction_rate),
                    ]
                })
                .collect(),
        },
        "by_category" => breakdown(&o.breakdowns.category, ("category", "类别")),
        "by_street" => breakdown(&o.breakdowns.street, ("street", "街道")),
        "by_unit" => breakdown(&o.breakdowns.unit, ("unit", "承办单位")),
        "trend" => Table {
            columns: vec![
                ("date", "日期"),
                ("received", "受理量"),
                ("dispatched", "分拨量"),
                ("completed", "办结量"),
                ("first_dispatch_accuracy", "一次分拨准确率"),
                ("on_time_completion", "按时办结率"),
            ],
            rows: o
                .trend
                .iter()
                .map(|p| {
                    vec![
                        p.date.to_string(),
                        p.received.to_string(),
                        p.dispatched.to_string(),
                        p.completed.to_string(),
                        num(p.first_dispatch_accuracy),
                        num(p.on_time_completion),
                    ]
                })
                .collect(),
        },
        "hotspots" => Table {
            columns: vec![
                ("rank", "排名"),
                ("community", "社区"),
                ("street", "街道"),
                ("size", "诉求数"),
                ("category", "类别"),
                ("tracking_number", "工单编号"),
                ("excerpt", "诉求摘要"),
                ("received_at", "受理时间"),
                ("status", "状态"),
            ],
            rows: o
                .hotspots
                .iter()
                .flat_map(|h| {
                    h.tickets.iter().map(move |t| {
                        vec![
                            h.rank.to_string(),
                            h.community_name.clone(),
                            h.street_name.clone(),
                            h.size.to_string(),
                            h.category.clone(),
                            t.tracking_number.clone(),
                            t.excerpt.clone(),
                            time(Some(t.received_at)),
                            t.status.clone(),
                        ]
                    })
                })
                .collect(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_bom_localised_headers_and_no_formulas() {
        let t = Table {
            columns: vec![("figure", "指标"), ("value", "数值")],
            rows: vec![
                vec!["=HYPERLINK(\"x\")".into(), "-3.5".into()],
                vec!["a,b".into(), "-cmd".into()],
            ],
        };
        let zh = String::from_utf8(t.to_csv(Lang::Zh).unwrap()).unwrap();
        assert_eq!(
            zh,
            "\u{feff}指标,数值\n\"'=HYPERLINK(\"\"x\"\")\",-3.5\n\"a,b\",'-cmd\n"
        );
        let en = String::from_utf8(t.to_csv(Lang::En).unwrap()).unwrap();
        assert!(en.starts_with("\u{feff}figure,value\n"));
    }
}
