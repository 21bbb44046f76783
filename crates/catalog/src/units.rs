//! The unit directory of 光明区: departments, utilities, the 6 street offices, their
//! communities and grids.
//!
//! Street offices are real. Community membership follows the 2018 re-division of the former
//! 光明 and 公明 offices into six streets as far as this project knows it; a few assignments may
//! be out of date, and communities marked `(*)` in [`COMMUNITIES`] are plausible inventions where
//! the real list was not known. Older sources list 合水口, 马山头, 楼村 and 塘尾 under 公明: they
//! sit here under 马田, 马田, 新湖 and 凤凰 respectively, which is believed to be the post-2018
//! division. Grids are invented (2-4 per community, `GR-…-1`…). Departments use their usual short
//! names; city bureaus with a 光明 branch (生态环境, 规划和自然资源, 市场监管) are listed as
//! the branch. Utilities are named generically.

use crate::model::{Unit, UnitDirectory, UnitKind};

/// District departments: (code, name).
pub const DEPARTMENTS: &[(&str, &str)] = &[
    ("DEP-ZF", "光明区人民政府办公室"),
    ("DEP-ZJ", "区住房和建设局"),
    ("DEP-CG", "区城市管理和综合执法局"),
    ("DEP-JT", "区交通运输局"),
    ("DEP-JJ", "市公安局交通警察支队光明大队"),
    ("DEP-HB", "市生态环境局光明管理局"),
    ("DEP-SJ", "市市场监督管理局光明监管局"),
    ("DEP-JY", "区教育局"),
    ("DEP-WJ", "区卫生健康局"),
    ("DEP-RS", "区人力资源局"),
    ("DEP-YB", "市医疗保障局光明分局"),
    ("DEP-MZ", "区民政局"),
    ("DEP-GA", "市公安局光明分局"),
    ("DEP-XF", "光明区消防救援大队"),
    ("DEP-GZ", "市规划和自然资源局光明管理局"),
    ("DEP-CX", "区城市更新和土地整备局"),
    ("DEP-WT", "区文化广电旅游体育局"),
    ("DEP-YJ", "区应急管理局"),
    ("DEP-SW", "区水务局"),
    ("DEP-GX", "区工业和信息化局"),
    ("DEP-FG", "区发展和改革局"),
    ("DEP-SF", "区司法局"),
    ("DEP-TY", "区退役军人事务局"),
    ("DEP-ZS", "区政务服务和数据管理局"),
];

/// Public utilities: (code, name).
pub const UTILITIES: &[(&str, &str)] = &[
    ("UT-SW", "光明水务集团（供水）"),
    ("UT-GD", "深圳供电局光明供电局"),
    ("UT-RQ", "深圳燃气集团光明分公司"),
    ("UT-TX", "通信运营商光明联络组（移动、电信、联通）"),
];

/// Street offices: (code, name).
pub const STREETS: &[(&str, &str)] = &[
    ("ST-GM", "光明街道"),
    ("ST-GOM", "公明街道"),
    ("ST-XH", "新湖街道"),
    ("ST-FH", "凤凰街道"),
    ("ST-YT", "玉塘街道"),
    ("ST-MT", "马田街道"),
];

/// Communities: (street code, community code suffix, name without 社区, grid count).
/// `(*)` in the trailing comment marks invented or uncertain communities.
pub const COMMUNITIES: &[(&str, &str, &str, u8)] = &[
    ("ST-GM", "GUANGMING", "光明", 4),
    ("ST-GM", "BIYAN", "碧眼", 3),
    ("ST-GM", "DONGZHOU", "东周", 3),
    ("ST-GM", "CUIHU", "翠湖", 2),
    ("ST-GM", "BAIHUA", "白花", 3),
    ("ST-GM", "XINPITOU", "新陂头", 2), // (*)
    ("ST-GOM", "GONGMING", "公明", 4),
    ("ST-GOM", "SHANGCUN", "上村", 4),
    ("ST-GOM", "XIACUN", "下村", 3),
    ("ST-GOM", "LISONGLANG", "李松蓢", 3),
    ("ST-GOM", "XITIAN", "西田", 3),
    ("ST-GOM", "NANHUAN", "南环", 2), // (*)
    ("ST-XH", "LOUCUN", "楼村", 4),
    ("ST-XH", "XINQIANG", "新羌", 3),
    ("ST-XH", "ZHENMEI", "圳美", 3),
    ("ST-FH", "FENGHUANG", "凤凰", 3),
    ("ST-FH", "DONGKENG", "东坑", 3),
    ("ST-FH", "JIAZITANG", "甲子塘", 3),
    ("ST-FH", "TANGJIA", "塘家", 3),
    ("ST-FH", "TANGWEI", "塘尾", 3),
    ("ST-YT", "CHANGZHEN", "长圳", 3),
    ("ST-YT", "TIANLIAO", "田寮", 3),
    ("ST-YT", "YULV", "玉律", 3),
    ("ST-YT", "HONGXING", "红星", 2),
    ("ST-MT", "MATIAN", "马田", 3),
    ("ST-MT", "HESHUIKOU", "合水口", 4),
    ("ST-MT", "MASHANTOU", "马山头", 3),
    ("ST-MT", "JIANGSHI", "将石", 3),
    ("ST-MT", "SHIJIA", "石家", 2),
    ("ST-MT", "SHUTIANPU", "薯田埔", 3),
    ("ST-MT", "XINZHUANG", "新庄", 3),
];

/// Code of a community: `CM-<street suffix>-<pinyin>`, e.g. `CM-GOM-SHANGCUN`.
pub fn community_code(street: &str, suffix: &str) -> String {
    let st = street.strip_prefix("ST-").unwrap_or(street);
    format!("CM-{st}-{suffix}")
}

/// The directory of 光明区 (≈ 150 units).
pub fn guangming_units() -> UnitDirectory {
    let mut units = Vec::new();
    for &(code, name) in DEPARTMENTS {
        units.push(unit(code, name, UnitKind::Department, None));
    }
    for &(code, name) in UTILITIES {
        units.push(unit(code, name, UnitKind::Utility, None));
    }
    for &(code, name) in STREETS {
        units.push(unit(code, name, UnitKind::Street, None));
    }
    for &(street, suffix, name, grids) in COMMUNITIES {
        let cm = community_code(street, suffix);
        units.push(Unit {
            code: cm.clone(),
            name: format!("{name}社区"),
            kind: UnitKind::Community,
            parent: Some(street.to_string()),
        });
        for g in 1..=grids {
            let st = street.strip_prefix("ST-").unwrap_or(street);
            units.push(Unit {
                code: format!("GR-{st}-{suffix}-{g}"),
                name: format!("{name}社区第{g}网格"),
                kind: UnitKind::Grid,
                parent: Some(cm.clone()),
            });
        }
    }
    UnitDirectory::new(units)
}

fn unit(code: &str, name: &str, kind: UnitKind, parent: Option<&str>) -> Unit {
    Unit {
        code: code.to_string(),
        name: name.to_string(),
        kind,
        parent: parent.map(str::to_string),
    }
}
