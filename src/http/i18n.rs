//! English and French: the caller's language, and every text the partner API says.
//!
//! Texts describe what is wrong and where, never the submitted value.

use crate::json::InexactNumber;
use crate::schema::{Violation, ViolationDetail};

/// The language of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    /// Picks French when `Accept-Language` prefers `fr` (any region) over English.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::En;
        };
        let mut best = (Lang::En, 0.0f32);
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            let lang = if tag == "fr" || tag.starts_with("fr-") {
                Lang::Fr
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q > best.1 {
                best = (lang, q);
            }
        }
        best.0
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// `en` or `fr` text.
    pub fn pick<'a>(self, en: &'a str, fr: &'a str) -> &'a str {
        match self {
            Lang::En => en,
            Lang::Fr => fr,
        }
    }
}

/// The message for one schema violation, in `lang`.
pub fn violation_message(v: &Violation, lang: Lang) -> String {
    use ViolationDetail as D;
    let fr = lang == Lang::Fr;
    match &v.detail {
        D::Required { property } => {
            if fr {
                format!("Le champ obligatoire « {property} » est absent.")
            } else {
                format!("The required field \"{property}\" is missing.")
            }
        }
        D::Type { expected } => {
            if fr {
                format!("La valeur doit être de type {}.", type_fr(expected))
            } else {
                format!("The value must be of type {expected}.")
            }
        }
        D::MinLength(n) => {
            if fr {
                format!("La valeur doit compter au moins {n} caractère(s).")
            } else {
                format!("The value must be at least {n} character(s) long.")
            }
        }
        D::MaxLength(n) => {
            if fr {
                format!("La valeur doit compter au plus {n} caractère(s).")
            } else {
                format!("The value must be at most {n} character(s) long.")
            }
        }
        D::Pattern => {
            lang.pick("The value does not have the expected form.", "La valeur n'a pas la forme attendue.").to_owned()
        }
        D::Format(f) => {
            let (en, fr_name) = match f.as_str() {
                "date" => ("a date (YYYY-MM-DD)", "une date (AAAA-MM-JJ)"),
                "date-time" => ("a date and time (RFC 3339)", "une date et heure (RFC 3339)"),
                "time" => ("a time with offset (HH:MM:SS±HH:MM)", "une heure avec décalage (HH:MM:SS±HH:MM)"),
                "email" => ("an email address", "une adresse courriel"),
                "uuid" => ("a UUID", "un UUID"),
                "uri" => ("a URI", "un URI"),
                _ => ("", ""),
            };
            if en.is_empty() {
                if fr {
                    format!("La valeur n'est pas au format « {f} ».")
                } else {
                    format!("The value is not in the \"{f}\" format.")
                }
            } else if fr {
                format!("La valeur doit être {fr_name}.")
            } else {
                format!("The value must be {en}.")
            }
        }
        D::Enum(options) => {
            let list = options.join(", ");
            if fr {
                format!("La valeur doit être l'une de : {list}.")
            } else {
                format!("The value must be one of: {list}.")
            }
        }
        D::Const => lang.pick("The value is not the one expected.", "La valeur n'est pas celle attendue.").to_owned(),
        D::Minimum(n) => {
            if fr {
                format!("La valeur doit être supérieure ou égale à {n}.")
            } else {
                format!("The value must be at least {n}.")
            }
        }
        D::Maximum(n) => {
            if fr {
                format!("La valeur doit être inférieure ou égale à {n}.")
            } else {
                format!("The value must be at most {n}.")
            }
        }
        D::ExclusiveMinimum(n) => {
            if fr {
                format!("La valeur doit être supérieure à {n}.")
            } else {
                format!("The value must be greater than {n}.")
            }
        }
        D::ExclusiveMaximum(n) => {
            if fr {
                format!("La valeur doit être inférieure à {n}.")
            } else {
                format!("The value must be less than {n}.")
            }
        }
        D::MultipleOf(n) => {
            if fr {
                format!("La valeur doit être un multiple de {n}.")
            } else {
                format!("The value must be a multiple of {n}.")
            }
        }
        D::MinItems(n) => {
            if fr {
                format!("La liste doit compter au moins {n} élément(s).")
            } else {
                format!("The list must have at least {n} item(s).")
            }
        }
        D::MaxItems(n) => {
            if fr {
                format!("La liste doit compter au plus {n} élément(s).")
            } else {
                format!("The list must have at most {n} item(s).")
            }
        }
        D::UniqueItems => {
            lang.pick("The list must not repeat an item.", "La liste ne doit pas répéter un élément.").to_owned()
        }
        D::MinProperties(n) => {
            if fr {
                format!("L'objet doit avoir au moins {n} champ(s).")
            } else {
                format!("The object must have at least {n} field(s).")
            }
        }
        D::MaxProperties(n) => {
            if fr {
                format!("L'objet doit avoir au plus {n} champ(s).")
            } else {
                format!("The object must have at most {n} field(s).")
            }
        }
        D::AdditionalProperty => {
            lang.pick("This field is not allowed by the schema.", "Ce champ n'est pas permis par le schéma.").to_owned()
        }
        D::Combination => lang
            .pick(
                "The value matches none of the allowed shapes.",
                "La valeur ne correspond à aucune des formes permises.",
            )
            .to_owned(),
        D::NumberPrecision(InexactNumber::OutOfRange) => lang
            .pick(
                "The number is beyond the range of a 64-bit floating-point number (IEEE 754 double).",
                "Le nombre dépasse la plage d'un nombre à virgule flottante de 64 bits (double IEEE 754).",
            )
            .to_owned(),
        D::NumberPrecision(InexactNumber::TooPrecise) => lang
            .pick(
                "The number is more precise than a 64-bit floating-point number (IEEE 754 double) holds, so it can be neither checked nor delivered exactly; send it as a double prints it.",
                "Le nombre est plus précis que ce que contient un nombre à virgule flottante de 64 bits (double IEEE 754) : il ne peut être ni vérifié ni transmis exactement; envoyez-le tel qu'un double l'affiche.",
            )
            .to_owned(),
        D::Untranslatable => lang
            .pick(
                "The translation to this version has no rule for this value.",
                "La traduction vers cette version n'a pas de règle pour cette valeur.",
            )
            .to_owned(),
        D::Other => {
            if fr {
                format!("La valeur enfreint la règle « {} » du schéma.", v.keyword)
            } else {
                format!("The value breaks the schema's \"{}\" rule.", v.keyword)
            }
        }
    }
}

fn type_fr(expected: &str) -> String {
    expected
        .split(", ")
        .map(|t| match t {
            "string" => "chaîne",
            "number" => "nombre",
            "integer" => "entier",
            "boolean" => "booléen",
            "object" => "objet",
            "array" => "tableau",
            "null" => "null",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_of_en_and_fr() {
        assert_eq!(Lang::from_accept_language(Some("fr-CA")), Lang::Fr);
        assert_eq!(Lang::from_accept_language(Some("fr")), Lang::Fr);
        assert_eq!(Lang::from_accept_language(Some("en-CA,fr;q=0.8")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("de, fr;q=0.5")), Lang::Fr);
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::En);
        assert_eq!(Lang::from_accept_language(None), Lang::En);
    }
}
