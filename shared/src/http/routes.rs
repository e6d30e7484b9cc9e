//! The route table: the single truth for the local server, the Lambda functions, the infra
//! checks (template, OpenAPI security requirements) and the tests. Each route declares who may
//! call it; [`super::dispatch`] enforces that before any handler runs.

use crate::Error;

/// A deployable Lambda function (one crate under `functions/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Accounts,
    Login,
    PasswordReset,
    Totp,
    StaticCodes,
}

impl Function {
    pub const ALL: [Function; 5] = [
        Self::Accounts,
        Self::Login,
        Self::PasswordReset,
        Self::Totp,
        Self::StaticCodes,
    ];

    /// The crate (and binary) name under `functions/`.
    pub fn crate_name(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
            Self::Login => "login",
            Self::PasswordReset => "password-reset",
            Self::Totp => "totp",
            Self::StaticCodes => "static-codes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    UserCreate,
    UserView,
    UserEvents,
    UserLogoutAll,
    UserDelete,
    PasswordReset,
    PasswordResetConfirm,
    PasswordChange,
    Login,
    TotpCreate,
    TotpLogin,
    TotpDelete,
    StaticCreate,
    StaticLogin,
    UserActivation,
    UserResendActivation,
    TotpRecoveryRequest,
    TotpRecovery,
    LoginRefresh,
    SessionList,
    SessionEnd,
}

/// A path parameter and the shape it must have (anything else is a 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    TotpCode,
    EmergencyCode,
    SessionId,
}

impl Param {
    pub fn accepts(self, segment: &str) -> bool {
        match self {
            Self::TotpCode => crate::domain::totp::is_totp_code_shape(segment),
            Self::EmergencyCode => crate::domain::totp::is_emergency_code_shape(segment),
            Self::SessionId => crate::domain::session::user_of(segment).is_some(),
        }
    }
}

/// Who may call a route (docs/api.md#authentication). Checked by dispatch, in this order:
/// 401 (token), then 403 (OTP gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The Authorization header is not looked at (login, as drf-jwt's obtain view).
    Anonymous,
    /// No token needed, but a token that is sent must be valid (as the original).
    Public,
    /// A valid token; the OTP gate does not apply.
    Token,
    /// A valid token, OTP-verified if the user has a confirmed TOTP device.
    OtpVerified,
    /// A valid token whose password proof (`auth_time`) is within `REAUTH_SECONDS`.
    RecentPassword,
    /// Both: OTP-verified (if the user has a device) and a recent password proof.
    OtpVerifiedRecentPassword,
}

impl Policy {
    /// The name the OpenAPI description gives it (`x-auth-policy`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Public => "public",
            Self::Token => "token",
            Self::OtpVerified => "otp-verified",
            Self::RecentPassword => "recent-password",
            Self::OtpVerifiedRecentPassword => "otp-verified+recent-password",
        }
    }

    /// Whether the route needs a token at all (the OpenAPI security requirement).
    pub fn needs_token(self) -> bool {
        !matches!(self, Self::Anonymous | Self::Public)
    }
}

#[derive(Debug)]
pub struct Route {
    pub endpoint: Endpoint,
    pub policy: Policy,
    pub methods: &'static [&'static str],
    /// With trailing slash; `{code}` marks the parameter segment.
    pub template: &'static str,
    pub function: Function,
    pub param: Option<Param>,
}

macro_rules! route {
    ($endpoint:ident, $policy:ident, [$($m:literal),+], $template:literal, $function:ident) => {
        route!($endpoint, $policy, [$($m),+], $template, $function, None)
    };
    ($endpoint:ident, $policy:ident, [$($m:literal),+], $template:literal, $function:ident, $param:expr) => {
        Route {
            endpoint: Endpoint::$endpoint,
            policy: Policy::$policy,
            methods: &[$($m),+],
            template: $template,
            function: Function::$function,
            param: $param,
        }
    };
}

pub static ROUTES: &[Route] = &[
    route!(UserCreate, Public, ["POST"], "/api/user/create/", Accounts),
    route!(UserView, OtpVerified, ["GET"], "/api/user/view/", Accounts),
    route!(
        UserEvents,
        OtpVerified,
        ["GET"],
        "/api/user/events/",
        Accounts
    ),
    route!(
        UserLogoutAll,
        OtpVerified,
        ["POST"],
        "/api/user/logout/all/",
        Accounts
    ),
    route!(
        UserDelete,
        OtpVerified,
        ["POST", "DELETE"],
        "/api/user/delete/",
        Accounts
    ),
    route!(
        PasswordChange,
        OtpVerified,
        ["POST"],
        "/api/user/password/change/",
        Accounts
    ),
    route!(
        UserActivation,
        Public,
        ["POST"],
        "/api/user/activation/",
        Accounts
    ),
    route!(
        UserResendActivation,
        Public,
        ["POST"],
        "/api/user/resend_activation/",
        Accounts
    ),
    route!(Login, Anonymous, ["POST"], "/api/user/login/", Login),
    route!(
        LoginRefresh,
        Anonymous,
        ["POST"],
        "/api/user/login/refresh/",
        Login
    ),
    route!(
        SessionList,
        OtpVerified,
        ["GET"],
        "/api/user/sessions/",
        Accounts
    ),
    route!(
        SessionEnd,
        OtpVerified,
        ["DELETE"],
        "/api/user/sessions/{id}/",
        Accounts,
        Some(Param::SessionId)
    ),
    route!(
        PasswordReset,
        Public,
        ["POST"],
        "/api/user/password/reset/",
        PasswordReset
    ),
    route!(
        PasswordResetConfirm,
        Public,
        ["POST"],
        "/api/user/password/reset/confirm/",
        PasswordReset
    ),
    route!(
        TotpCreate,
        RecentPassword,
        ["GET"],
        "/api/totp/create/",
        Totp
    ),
    route!(
        TotpLogin,
        Token,
        ["POST"],
        "/api/totp/login/{code}/",
        Totp,
        Some(Param::TotpCode)
    ),
    route!(
        TotpDelete,
        OtpVerifiedRecentPassword,
        ["POST"],
        "/api/totp/delete/",
        Totp
    ),
    route!(
        TotpRecoveryRequest,
        RecentPassword,
        ["POST"],
        "/api/totp/recovery/request/",
        Totp
    ),
    route!(TotpRecovery, Public, ["POST"], "/api/totp/recovery/", Totp),
    route!(
        StaticCreate,
        OtpVerifiedRecentPassword,
        ["GET"],
        "/api/static/create/",
        StaticCodes
    ),
    route!(
        StaticLogin,
        Token,
        ["POST", "GET"],
        "/api/static/login/{code}/",
        StaticCodes,
        Some(Param::EmergencyCode)
    ),
];

impl Route {
    /// The `Allow` header: the route's methods and OPTIONS.
    pub fn allow_header(&self) -> String {
        let mut methods: Vec<&str> = self.methods.to_vec();
        methods.push("OPTIONS");
        methods.join(", ")
    }

    /// Whether `path` is this route (with or without the trailing slash); answers the parameter.
    fn matches<'p>(&self, path: &'p str) -> Option<Option<&'p str>> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let template = self.template.trim_end_matches('/');
        let mut param = None;
        let mut path_segments = path.split('/');
        for expected in template.split('/') {
            let segment = path_segments.next()?;
            if expected.starts_with('{') {
                param = Some(segment);
            } else if segment != expected {
                return None;
            }
        }
        if path_segments.next().is_some() {
            return None;
        }
        match (self.param, param) {
            (Some(kind), Some(segment)) if kind.accepts(segment) => Some(Some(segment)),
            (None, None) => Some(None),
            _ => None,
        }
    }
}

/// The route serving `path` (any method) and its parameter.
pub fn route_for_path(path: &str) -> Option<(&'static Route, Option<&str>)> {
    ROUTES.iter().find_map(|r| r.matches(path).map(|p| (r, p)))
}

#[derive(Debug)]
pub struct Matched {
    pub route: &'static Route,
    pub param: Option<String>,
}

/// Finds the route for a request: 404 for an unknown path (or a malformed parameter), 405 for a
/// known path with another method. OPTIONS matches every known path.
pub fn resolve(method: &str, path: &str) -> Result<Matched, Error> {
    let (route, param) = route_for_path(path).ok_or(Error::NotFound)?;
    if method != "OPTIONS" && !route.methods.contains(&method) {
        return Err(Error::MethodNotAllowed {
            method: method.to_owned(),
            allow: route.allow_header(),
        });
    }
    Ok(Matched {
        route,
        param: param.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_and_without_the_trailing_slash() {
        assert_eq!(
            resolve("POST", "/api/user/create").unwrap().route.endpoint,
            Endpoint::UserCreate
        );
        assert_eq!(
            resolve("POST", "/api/user/create/").unwrap().route.endpoint,
            Endpoint::UserCreate
        );
    }

    #[test]
    fn a_malformed_code_segment_is_not_found() {
        assert!(matches!(
            resolve("POST", "/api/totp/login/12345/"),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            resolve("POST", "/api/totp/login/12a456/"),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            resolve("GET", "/api/static/login/ABCDEFGH/"),
            Err(Error::NotFound)
        ));
        let ok = resolve("GET", "/api/static/login/abcdefg2/").unwrap();
        assert_eq!(ok.param.as_deref(), Some("abcdefg2"));
    }

    #[test]
    fn a_known_path_with_another_method_is_not_allowed() {
        let err = resolve("PUT", "/api/user/view/").unwrap_err();
        assert!(matches!(err, Error::MethodNotAllowed { allow, .. } if allow == "GET, OPTIONS"));
    }

    #[test]
    fn every_function_serves_at_least_one_route() {
        for function in Function::ALL {
            assert!(
                ROUTES.iter().any(|r| r.function == function),
                "{function:?}"
            );
        }
    }
}
