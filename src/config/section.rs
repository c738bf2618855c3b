//! What every section of the configuration is written with: [`ConfigError`], the [`Section`]
//! trait and the `config_section!` macro, which turns one declaration per key (its doc, serde
//! attributes, type, default and check) into the struct, its `Default`, its help lines and its
//! checks.
//!
//! No key, default or check of a particular section lives here (each is in its section's file),
//! and this file imports none of the other files of `config/`: they all import it.

/// Where the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source held a value of the wrong type, an unknown key, or a file could not be read.
    #[error("{0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The values parsed but contradict each other.
    #[error("{key}: {message}")]
    Inconsistent {
        /// The dotted key at fault.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// One line of help: the dotted key and its documentation.
pub type Help = (&'static str, &'static str);

/// A table of the configuration, declared with `config_section!`.
pub trait Section: Default {
    /// Every key of the table, its nested tables' included, in declaration order, each with the
    /// first line of its doc comment.
    const HELP: &'static [Help];

    /// The same keys in the same order, each with the rest of its doc comment (what follows the
    /// first line; empty when there is none): the longer text of the configuration reference.
    const DETAILS: &'static [Help];

    /// Pushes every problem of these values, each naming its key: each key's own check in
    /// declaration order (a nested table's checks where it is declared), then the table's checks
    /// between keys.
    fn check(&self, out: &mut Vec<ConfigError>);
}

/// Runs one key's check: each message it returns is a problem of `key`.
pub fn run_check<T: ?Sized, M>(
    key: &'static str,
    value: &T,
    check: impl FnOnce(&T) -> M,
    out: &mut Vec<ConfigError>,
) where
    M: IntoIterator,
    M::Item: Into<String>,
{
    out.extend(
        check(value)
            .into_iter()
            .map(|message| ConfigError::Inconsistent {
                key,
                message: message.into(),
            }),
    );
}

/// How many help lines `parts` hold together.
pub const fn help_len(parts: &[&[Help]]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < parts.len() {
        n += parts[i].len();
        i += 1;
    }
    n
}

/// `parts` one after the other, at compile time (`N` is [`help_len`] of them).
pub const fn help_concat<const N: usize>(parts: &[&[Help]]) -> [Help; N] {
    let mut out: [Help; N] = [("", ""); N];
    let mut k = 0;
    let mut i = 0;
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            out[k] = parts[i][j];
            k += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(k == N, "help_concat: N is not help_len(parts)");
    out
}

/// Declares one table of the configuration, each key once.
///
/// ```ignore
/// config_section! {
///     /// How tokens are verified (and minted by `lookout token`).
///     #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
///     #[serde(default, deny_unknown_fields)]
///     pub struct JwtConfig in "jwt.", cross_checks: problems {
///         /// clock skew tolerated on exp/nbf
///         ///
///         /// Longer text, for the operator: docs/configuration.md shows it after the help.
///         #[serde(with = "humantime_serde")]
///         pub leeway: Duration = Duration::from_secs(30);
///         /// https:// URL of the identity provider's key set (JWKS); set: keys chosen by kid
///         pub jwks_url: Option<String> = None,
///             check: |url| url
///                 .as_deref()
///                 .is_some_and(|u| !u.starts_with("https://"))
///                 .then_some("the key set is fetched over https:// only");
///         /// Where a token's claims say who it is.
///         pub claims: ClaimsConfig;
///     }
/// }
/// ```
///
/// - The struct's attributes (`derive`, `serde(default, deny_unknown_fields)`) are passed
///   through as written; never derive `Default`, the macro writes it.
/// - `in "jwt."`: what each key's dotted name starts with (`""` for the root, the full path
///   for a nested table: `"jwt.claims."`).
/// - `cross_checks: problems` (optional): an inherent `fn problems(&self, out: &mut
///   Vec<ConfigError>)` beside the declaration, with the checks that read more than one key;
///   it runs after the keys' own checks.
/// - Each field: its doc comment, whose **first line is the key's help text** (`lookout serve
///   --help`, `config::KEYS`), so keep it one short line, and put the rest after an empty `///`
///   line: the rest is the key's longer text in the configuration reference
///   (`config::reference_markdown`, `docs/configuration.md`), written for the operator, so no
///   rustdoc links there; then its `#[serde(..)]` attributes, passed through; then `pub name: Type = default`
///   and optionally `, check: f`, where `f` takes `&Type` and returns the messages of what is
///   wrong (an `Option` or a `Vec` of `&str` or `String`), each reported as `key: message`.
/// - A key's dotted name is the prefix and the field's name: never `#[serde(rename)]` a field.
/// - A field without `= default` is a nested table (a type declared with this macro): its
///   keys, defaults and checks are those of its own declaration.
macro_rules! config_section {
    (@default $ty:ty) => {
        <$ty as ::core::default::Default>::default()
    };
    (@default $ty:ty, $default:expr) => {
        $default
    };
    (@help $ty:ty, $key:expr, $help:literal) => {
        <$ty as $crate::config::section::Section>::HELP
    };
    (@help $ty:ty, $key:expr, $help:literal, $default:expr) => {
        &[($key, $help.trim_ascii())]
    };
    (@details $ty:ty, $key:expr, $details:expr) => {
        <$ty as $crate::config::section::Section>::DETAILS
    };
    (@details $ty:ty, $key:expr, $details:expr, $default:expr) => {
        &[($key, $details)]
    };
    (@check [] [] $key:expr, $value:expr, $out:ident) => {
        $crate::config::section::Section::check($value, $out)
    };
    (@check [$default:expr] [] $key:expr, $value:expr, $out:ident) => {};
    (@check [$default:expr] [$check:expr] $key:expr, $value:expr, $out:ident) => {
        $crate::config::section::run_check($key, $value, $check, $out)
    };
    (@check [] [$check:expr] $key:expr, $value:expr, $out:ident) => {
        compile_error!("a nested table has no check here: its declaration has its checks")
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident in $prefix:literal $(, cross_checks: $cross:ident)? {
            $(
                #[doc = $help:literal]
                $(#[doc = $doc:literal])*
                $(#[serde($($serde:tt)*)])*
                $fvis:vis $field:ident : $ty:ty $(= $default:expr)? $(, check: $check:expr)?;
            )*
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                #[doc = $help]
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])*
                $fvis $field: $ty,
            )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                $name {
                    $(
                        $field: $crate::config::section::config_section!(
                            @default $ty $(, $default)?
                        ),
                    )*
                }
            }
        }

        impl $crate::config::section::Section for $name {
            const HELP: &'static [$crate::config::section::Help] = {
                const PARTS: &[&[$crate::config::section::Help]] = &[$(
                    $crate::config::section::config_section!(
                        @help $ty, concat!($prefix, stringify!($field)), $help $(, $default)?
                    ),
                )*];
                const ALL: [$crate::config::section::Help; $crate::config::section::help_len(PARTS)] =
                    $crate::config::section::help_concat(PARTS);
                &ALL
            };

            const DETAILS: &'static [$crate::config::section::Help] = {
                const PARTS: &[&[$crate::config::section::Help]] = &[$(
                    $crate::config::section::config_section!(
                        @details $ty, concat!($prefix, stringify!($field)),
                        concat!("" $(, $doc, "\n")*) $(, $default)?
                    ),
                )*];
                const ALL: [$crate::config::section::Help; $crate::config::section::help_len(PARTS)] =
                    $crate::config::section::help_concat(PARTS);
                &ALL
            };

            // A table without checks leaves `out` unused.
            #[allow(unused_variables)]
            fn check(&self, out: &mut ::std::vec::Vec<$crate::config::section::ConfigError>) {
                $(
                    $crate::config::section::config_section!(
                        @check [$($default)?] [$($check)?]
                        concat!($prefix, stringify!($field)), &self.$field, out
                    );
                )*
                $( Self::$cross(self, out); )?
            }
        }
    };
}
pub(crate) use config_section;
