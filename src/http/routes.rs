//! Route tables: each API's routes as (method, path template, operation), and everything derived
//! from them.
//!
//! One table per listener is the single source of the router, of the `405` answers and their
//! `Allow` header, of the route template named in each request's log line, and of the list of
//! operations that `tests/it/openapi.rs` holds the OpenAPI documents to. A path that is not
//! exactly a route (`//v1/records/x`, a trailing slash) is not found.
//!
//! Two routes may share a path shape and differ only by what their parameter is:
//! `POST /v1/records/{record_type}` and `GET /v1/records/{record_id}`. The table tells them
//! apart by the parameter's value ([`ParameterShape`]): a record id is a UUID, a record type
//! never is (`check` refuses a record type named like one). So `/v1/records/birth-registration`
//! allows only `POST`, and `/v1/records/<uuid>` only `GET` (and `HEAD`).
//!
//! **Invariant:** `HEAD` is allowed wherever `GET` is, and `Allow` lists exactly the methods a
//! request to that path would be served with.

use http::Method;

/// One route: a method, an OpenAPI-style path template, and the operation that serves it.
#[derive(Debug)]
pub struct Route<O> {
    pub method: Method,
    pub template: &'static str,
    pub operation: O,
}

/// What a path parameter's value must look like for a route to apply.
pub trait ParameterShape {
    /// Whether `value` may be the parameter `name` of a route.
    fn accepts(name: &str, value: &str) -> bool;
}

/// Every value fits every parameter.
pub struct AnyShape;

impl ParameterShape for AnyShape {
    fn accepts(_: &str, _: &str) -> bool {
        true
    }
}

/// Why a request matched no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The path is not a route.
    NotFound,
    /// The path is a route, but not with this method; `allow` lists those it takes.
    MethodNotAllowed { allow: String },
}

/// A request's route and its path parameters.
#[derive(Debug)]
pub struct Matched<'t, 'p, O> {
    pub route: &'t Route<O>,
    params: Vec<(&'t str, &'p str)>,
}

impl<'p, O> Matched<'_, 'p, O> {
    /// The value of the template's parameter `name` (empty if the template has none).
    pub fn param(&self, name: &str) -> &'p str {
        self.params.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v)
    }
}

/// A router built from a list of routes.
pub struct RouteTable<O: 'static> {
    routes: &'static [Route<O>],
    /// Parameter names of each route's template, in order.
    names: Vec<Vec<&'static str>>,
    /// Each path shape (parameters renamed by position) to the routes that have it.
    router: matchit::Router<Vec<usize>>,
}

/// `template` with its parameters renamed by position (`{p0}`, `{p1}`...) and their names.
fn shape(template: &'static str) -> (String, Vec<&'static str>) {
    let mut path = String::with_capacity(template.len());
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        names.push(&rest[open + 1..close]);
        path.push_str(&format!("{{p{}}}", names.len() - 1));
        rest = rest.get(close + 1..).unwrap_or("");
    }
    path.push_str(rest);
    (path, names)
}

impl<O> RouteTable<O> {
    /// The table of `routes`. The routes are written in the code, so a template matchit cannot
    /// take is a programming error that every test that starts a gateway catches.
    pub fn new(routes: &'static [Route<O>]) -> Self {
        let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
        let mut names = Vec::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            let (path, route_names) = shape(route.template);
            names.push(route_names);
            match shapes.iter_mut().find(|(p, _)| *p == path) {
                Some((_, indexes)) => indexes.push(i),
                None => shapes.push((path, vec![i])),
            }
        }
        let mut router = matchit::Router::new();
        for (path, indexes) in shapes {
            // invariant: the templates are constants of the code, checked by the unit tests.
            router.insert(path, indexes).expect("route templates are valid and distinct");
        }
        RouteTable { routes, names, router }
    }

    /// Every route of the table.
    pub fn routes(&self) -> &'static [Route<O>] {
        self.routes
    }

    /// The route serving `method` on `path`, or why there is none.
    pub fn find<'t, 'p, S: ParameterShape>(
        &'t self,
        method: &Method,
        path: &'p str,
    ) -> Result<Matched<'t, 'p, O>, Miss> {
        let found = self.router.at(path).map_err(|_| Miss::NotFound)?;
        let values: Vec<&'p str> = found.params.iter().map(|(_, v)| v).collect();
        let fitting = found
            .value
            .iter()
            .copied()
            .filter(|&i| self.names[i].iter().zip(&values).all(|(name, value)| S::accepts(name, value)));
        let mut allowed: Vec<&'static Route<O>> = Vec::new();
        for i in fitting {
            let route = &self.routes[i];
            if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                let params = self.names[i].iter().copied().zip(values.iter().copied()).collect();
                return Ok(Matched { route, params });
            }
            allowed.push(route);
        }
        if allowed.is_empty() {
            return Err(Miss::NotFound);
        }
        let mut methods: Vec<&str> = allowed.iter().map(|r| r.method.as_str()).collect();
        if methods.contains(&"GET") {
            methods.push("HEAD");
        }
        methods.sort_unstable();
        methods.dedup();
        Err(Miss::MethodNotAllowed { allow: methods.join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        List,
        Submit,
        Status,
        Schema,
    }

    static ROUTES: [Route<Op>; 4] = [
        Route { method: Method::GET, template: "/v1/records", operation: Op::List },
        Route { method: Method::POST, template: "/v1/records/{record_type}", operation: Op::Submit },
        Route { method: Method::GET, template: "/v1/records/{record_id}", operation: Op::Status },
        Route { method: Method::GET, template: "/v1/schemas/{record_type}/{version}", operation: Op::Schema },
    ];

    struct Ids;
    impl ParameterShape for Ids {
        fn accepts(name: &str, value: &str) -> bool {
            let id = value.len() == 36 && value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            match name {
                "record_id" => id,
                "record_type" => !id,
                _ => true,
            }
        }
    }

    const ID: &str = "01900000-0000-7000-8000-000000000000";

    #[test]
    fn routes_sharing_a_shape_are_told_apart_by_their_parameter() {
        let table = RouteTable::new(&ROUTES);
        let submit = table.find::<Ids>(&Method::POST, "/v1/records/birth-registration").unwrap();
        assert_eq!((submit.route.operation, submit.param("record_type")), (Op::Submit, "birth-registration"));
        let path = format!("/v1/records/{ID}");
        let status = table.find::<Ids>(&Method::GET, &path).unwrap();
        assert_eq!((status.route.operation, status.param("record_id")), (Op::Status, ID));
        assert_eq!(
            table.find::<Ids>(&Method::GET, "/v1/records/birth-registration").unwrap_err(),
            Miss::MethodNotAllowed { allow: "POST".into() }
        );
        assert_eq!(
            table.find::<Ids>(&Method::POST, &format!("/v1/records/{ID}")).unwrap_err(),
            Miss::MethodNotAllowed { allow: "GET, HEAD".into() }
        );
        let schema = table.find::<Ids>(&Method::HEAD, "/v1/schemas/birth-registration/1.1").unwrap();
        assert_eq!((schema.param("record_type"), schema.param("version")), ("birth-registration", "1.1"));
    }

    #[test]
    fn a_path_that_is_not_exactly_a_route_is_not_found() {
        let table = RouteTable::new(&ROUTES);
        for path in
            ["//v1/records/birth-registration", "/v1/records/", "/v1/records//x", "/v1//records", "/v1/recordsx", ""]
        {
            assert_eq!(table.find::<Ids>(&Method::POST, path).unwrap_err(), Miss::NotFound, "{path:?}");
        }
    }
}
