//! Project Fluent translations, embedded in the binary. English is the source; every other locale must carry
//! every message and every variable (a test enforces it).
//!
//! Negotiation order: the signed-in user's preference, then the language cookie, then `Accept-Language`, then the
//! node default.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use unic_langid::LanguageIdentifier;

/// (tag, native name, Fluent source). Add a locale here and in `locales/`.
pub const LOCALES: &[(&str, &str, &str)] = &[
    (
        "en",
        "English",
        concat!(
            include_str!("../../../locales/en/main.ftl"),
            include_str!("../../../locales/en/certs.ftl"),
            include_str!("../../../locales/en/surveillance.ftl"),
            include_str!("../../../locales/en/visits.ftl"),
            include_str!("../../../locales/en/imaging.ftl"),
            include_str!("../../../locales/en/slides.ftl"),
            include_str!("../../../locales/en/prescriptions.ftl"),
            include_str!("../../../locales/en/monitoring.ftl")
        ),
    ),
    (
        "zh-CN",
        "中文",
        concat!(
            include_str!("../../../locales/zh-CN/main.ftl"),
            include_str!("../../../locales/zh-CN/certs.ftl"),
            include_str!("../../../locales/zh-CN/surveillance.ftl"),
            include_str!("../../../locales/zh-CN/visits.ftl"),
            include_str!("../../../locales/zh-CN/imaging.ftl"),
            include_str!("../../../locales/zh-CN/slides.ftl"),
            include_str!("../../../locales/zh-CN/prescriptions.ftl"),
            include_str!("../../../locales/zh-CN/monitoring.ftl")
        ),
    ),
    (
        "ru",
        "Русский",
        concat!(
            include_str!("../../../locales/ru/main.ftl"),
            include_str!("../../../locales/ru/certs.ftl"),
            include_str!("../../../locales/ru/surveillance.ftl"),
            include_str!("../../../locales/ru/visits.ftl"),
            include_str!("../../../locales/ru/imaging.ftl"),
            include_str!("../../../locales/ru/slides.ftl"),
            include_str!("../../../locales/ru/prescriptions.ftl"),
            include_str!("../../../locales/ru/monitoring.ftl")
        ),
    ),
    (
        "ar",
        "العربية",
        concat!(
            include_str!("../../../locales/ar/main.ftl"),
            include_str!("../../../locales/ar/certs.ftl"),
            include_str!("../../../locales/ar/surveillance.ftl"),
            include_str!("../../../locales/ar/visits.ftl"),
            include_str!("../../../locales/ar/imaging.ftl"),
            include_str!("../../../locales/ar/slides.ftl"),
            include_str!("../../../locales/ar/prescriptions.ftl"),
            include_str!("../../../locales/ar/monitoring.ftl")
        ),
    ),
];

const RTL: &[&str] = &["ar", "fa", "he", "ur"];

pub struct I18n {
    bundles: Vec<(&'static str, FluentBundle<FluentResource>)>,
}

impl Default for I18n {
    fn default() -> Self {
        Self::new()
    }
}

impl I18n {
    pub fn new() -> Self {
        let mut bundles = Vec::new();
        for (tag, _, src) in LOCALES {
            let lang: LanguageIdentifier = tag.parse().unwrap_or_default();
            let mut bundle = FluentBundle::new_concurrent(vec![lang]);
            let resource = match FluentResource::try_new((*src).to_owned()) {
                Ok(r) => r,
                Err((r, errors)) => {
                    tracing::error!(locale = tag, errors = errors.len(), "Fluent syntax errors");
                    r
                }
            };
            if let Err(errors) = bundle.add_resource(resource) {
                tracing::error!(
                    locale = tag,
                    errors = errors.len(),
                    "duplicate Fluent messages"
                );
            }
            bundles.push((*tag, bundle));
        }
        Self { bundles }
    }

    pub fn supported(tag: &str) -> Option<&'static str> {
        LOCALES
            .iter()
            .map(|(t, _, _)| *t)
            .find(|t| t.eq_ignore_ascii_case(tag))
            .or_else(|| {
                let primary = tag.split(['-', '_']).next().unwrap_or(tag);
                LOCALES.iter().map(|(t, _, _)| *t).find(|t| {
                    t.split('-')
                        .next()
                        .is_some_and(|p| p.eq_ignore_ascii_case(primary))
                })
            })
    }

    /// Pick the UI language.
    pub fn negotiate(
        user: Option<&str>,
        cookie: Option<&str>,
        accept: Option<&str>,
        default: &str,
    ) -> &'static str {
        if let Some(t) = user
            .and_then(Self::supported)
            .or_else(|| cookie.and_then(Self::supported))
        {
            return t;
        }
        if let Some(accept) = accept {
            let mut ranges: Vec<(f32, &str)> = accept
                .split(',')
                .filter_map(|part| {
                    let mut it = part.trim().split(';');
                    let tag = it.next()?.trim();
                    let q = it
                        .find_map(|p| p.trim().strip_prefix("q="))
                        .and_then(|q| q.parse().ok())
                        .unwrap_or(1.0);
                    Some((q, tag))
                })
                .collect();
            ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
            if let Some(t) = ranges.iter().find_map(|(_, tag)| Self::supported(tag)) {
                return t;
            }
        }
        Self::supported(default).unwrap_or("en")
    }

    pub fn dir(lang: &str) -> &'static str {
        let primary = lang.split('-').next().unwrap_or(lang);
        if RTL.contains(&primary) {
            "rtl"
        } else {
            "ltr"
        }
    }

    fn bundle(&self, lang: &str) -> Option<&FluentBundle<FluentResource>> {
        self.bundles
            .iter()
            .find(|(t, _)| *t == lang)
            .map(|(_, b)| b)
    }

    pub fn has(&self, lang: &str, id: &str) -> bool {
        self.bundle(lang).is_some_and(|b| b.has_message(id))
    }

    /// Format a message; falls back to English, then to the id itself (visible, so a gap is noticed).
    pub fn format(&self, lang: &str, id: &str, args: Option<&FluentArgs>) -> String {
        for l in [lang, "en"] {
            if let Some(bundle) = self.bundle(l) {
                if let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) {
                    let mut errors = vec![];
                    return bundle
                        .format_pattern(pattern, args, &mut errors)
                        .into_owned();
                }
            }
        }
        id.to_owned()
    }
}

/// What templates use: a language and a way to translate in it.
#[derive(Clone, Copy)]
pub struct Tr<'a> {
    pub i18n: &'a I18n,
    pub lang: &'static str,
}

impl Tr<'_> {
    pub fn t(&self, id: &str) -> String {
        self.i18n.format(self.lang, id, None)
    }
    /// A message with one variable.
    pub fn t1(&self, id: &str, name: &'static str, value: impl ToString) -> String {
        let mut args = FluentArgs::new();
        args.set(name, FluentValue::from(value.to_string()));
        self.i18n.format(self.lang, id, Some(&args))
    }
    /// A message with two variables.
    pub fn t2(
        &self,
        id: &str,
        n1: &'static str,
        v1: impl ToString,
        n2: &'static str,
        v2: impl ToString,
    ) -> String {
        let mut args = FluentArgs::new();
        args.set(n1, FluentValue::from(v1.to_string()));
        args.set(n2, FluentValue::from(v2.to_string()));
        self.i18n.format(self.lang, id, Some(&args))
    }
    /// A message with any number of variables.
    pub fn tn(&self, id: &str, vars: &[(&'static str, String)]) -> String {
        let mut args = FluentArgs::new();
        for (n, v) in vars {
            args.set(*n, FluentValue::from(v.clone()));
        }
        self.i18n.format(self.lang, id, Some(&args))
    }
    pub fn dir(&self) -> &'static str {
        I18n::dir(self.lang)
    }
    pub fn locales(&self) -> Vec<(&'static str, &'static str)> {
        LOCALES.iter().map(|(t, n, _)| (*t, *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_syntax::ast;
    use std::collections::{BTreeMap, BTreeSet};

    /// Message id → the set of variables it uses (including in attributes and select expressions).
    fn messages(src: &str) -> BTreeMap<String, BTreeSet<String>> {
        let res = fluent_syntax::parser::parse(src)
            .unwrap_or_else(|(_, e)| panic!("syntax errors: {e:?}"));
        let mut out = BTreeMap::new();
        for entry in res.body {
            if let ast::Entry::Message(m) = entry {
                let mut vars = BTreeSet::new();
                if let Some(v) = &m.value {
                    collect(v, &mut vars);
                }
                out.insert(m.id.name.to_string(), vars);
            }
        }
        out
    }

    fn collect(p: &ast::Pattern<&str>, vars: &mut BTreeSet<String>) {
        for el in &p.elements {
            if let ast::PatternElement::Placeable { expression } = el {
                collect_expr(expression, vars);
            }
        }
    }

    fn collect_expr(e: &ast::Expression<&str>, vars: &mut BTreeSet<String>) {
        match e {
            ast::Expression::Inline(ast::InlineExpression::VariableReference { id }) => {
                vars.insert(id.name.to_string());
            }
            ast::Expression::Inline(_) => {}
            ast::Expression::Select { selector, variants } => {
                if let ast::InlineExpression::VariableReference { id } = selector {
                    vars.insert(id.name.to_string());
                }
                for v in variants {
                    collect(&v.value, vars);
                }
            }
        }
    }

    #[test]
    fn every_locale_has_every_message_and_variable() {
        let en = messages(LOCALES[0].2);
        assert!(
            en.len() > 100,
            "the English source has {} messages",
            en.len()
        );
        for (tag, _, src) in &LOCALES[1..] {
            let other = messages(src);
            for (id, vars) in &en {
                let Some(theirs) = other.get(id) else {
                    panic!("locale {tag} misses message {id}");
                };
                assert_eq!(vars, theirs, "locale {tag}, message {id}: variables differ");
            }
            for id in other.keys() {
                assert!(
                    en.contains_key(id),
                    "locale {tag} has {id}, which English does not"
                );
            }
        }
    }

    /// Every error code the node can answer with (they double as Fluent ids) has an English message, so the UI
    /// never shows a bare id. The codes are read from the sources of the crates that raise them.
    #[test]
    fn every_error_code_has_a_message() {
        let en = messages(LOCALES[0].2);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut missing = BTreeSet::new();
        let mut seen = 0;
        for dir in ["server/src", "domain/src", "fhir/src"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let src = std::fs::read_to_string(entry.path()).unwrap_or_default();
                for (i, _) in src.match_indices("\"error-") {
                    let code: String = src[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                        .collect();
                    if code.len() > "error-".len() && src[i + 1 + code.len()..].starts_with('"') {
                        seen += 1;
                        if !en.contains_key(&code) {
                            missing.insert(code);
                        }
                    }
                }
            }
        }
        assert!(seen > 30, "found only {seen} error codes in the sources");
        assert!(
            missing.is_empty(),
            "error codes without a message: {missing:?}"
        );
    }

    #[test]
    fn every_locale_parses_without_errors_or_duplicate_ids() {
        for (tag, _, src) in LOCALES {
            let resource = match FluentResource::try_new(src.to_string()) {
                Ok(r) => r,
                Err((_, errors)) => panic!("{tag}: syntax errors {errors:?}"),
            };
            let lang: LanguageIdentifier = "en".parse().unwrap();
            let mut bundle = FluentBundle::new_concurrent(vec![lang]);
            if let Err(errors) = bundle.add_resource(resource) {
                panic!("{tag}: {errors:?}");
            }
        }
    }

    #[test]
    fn negotiation_order() {
        assert_eq!(
            I18n::negotiate(Some("ru"), Some("ar"), Some("zh-CN"), "en"),
            "ru"
        );
        assert_eq!(I18n::negotiate(None, Some("ar"), Some("zh-CN"), "en"), "ar");
        assert_eq!(
            I18n::negotiate(None, None, Some("fr;q=0.9, zh-Hans-CN;q=0.8, de"), "en"),
            "zh-CN"
        );
        assert_eq!(I18n::negotiate(None, None, Some("de"), "ru"), "ru");
        assert_eq!(I18n::dir("ar"), "rtl");
        assert_eq!(I18n::dir("zh-CN"), "ltr");
    }

    #[test]
    fn variables_are_substituted_and_isolated() {
        let i = I18n::new();
        let tr = Tr {
            i18n: &i,
            lang: "ar",
        };
        let s = tr.t1("signed-in-as", "name", "Dr Omar");
        assert!(s.contains("Dr Omar"));
        // Fluent wraps variables in bidi isolation marks so Latin names read correctly in Arabic text.
        assert!(s.contains('\u{2068}'));
    }
}
