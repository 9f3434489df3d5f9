//! A Rust port of the parts of Node's `util.inspect` and `util.format` that scripts
//! notice: how `console.log` prints values.
//!
//! Objects print as `{ a: 1, b: 'x' }`, arrays as `[ 1, 2 ]`, nested values stop at a
//! depth (`[Object]`), cycles print as `[Circular *1]`, long outputs break into lines
//! the way Node's `compact: 3` mode does, long arrays of short items are grouped in
//! columns. Getters are shown as `[Getter]`, never called; proxies are shown through
//! their target, never trapped.
//!
//! Must not: run without a budget (a huge object must not build a huge Rust string:
//! output stops a little past the run's remaining output allowance), hang on cycles, or
//! panic on anything a script can build.

use rquickjs::function::Args;
use rquickjs::{Coerced, Ctx, Function, Object, Type, Value, qjs};

/// Node's default `depth` for `console.log`.
pub(crate) const DEFAULT_DEPTH: usize = 2;
/// Node's `breakLength`.
const BREAK_LENGTH: usize = 80;
/// Node's `compact` (the innermost levels that may share a line).
const COMPACT: usize = 3;
/// Node's `maxArrayLength` (and for Map/Set entries).
const MAX_ITEMS: usize = 100;

/// One formatting job (one console call). Holds the ancestors being printed, for cycle
/// detection, and the remaining byte budget.
pub(crate) struct Inspector<'js> {
    ctx: Ctx<'js>,
    budget: usize,
    /// Objects being formatted, outermost first, with their `<ref *N>` number once a
    /// cycle back to them was found.
    ancestors: Vec<(Value<'js>, Option<usize>)>,
    circular_count: usize,
    /// Node's `indentationLvl`.
    indent: usize,
    /// Node's `currentDepth`: the level of the object formatted last.
    current_depth: usize,
}

enum Prop<'js> {
    Data(Value<'js>),
    Accessor { get: bool, set: bool },
}

impl<'js> Inspector<'js> {
    pub(crate) fn new(ctx: Ctx<'js>, budget: usize) -> Self {
        Self {
            ctx,
            budget,
            ancestors: Vec::new(),
            circular_count: 0,
            indent: 0,
            current_depth: 0,
        }
    }

    fn spend(&mut self, s: &str) {
        self.budget = self.budget.saturating_sub(s.len());
    }

    fn exhausted(&self) -> bool {
        self.budget == 0
    }

    /// `util.format(...args)`: what one `console.log(...args)` prints.
    pub(crate) fn format(&mut self, args: &[Value<'js>]) -> String {
        let Some(first) = args.first() else {
            return String::new();
        };
        if let Some(s) = first.as_string() {
            let first = s.to_string().unwrap_or_default();
            if args.len() == 1 {
                return first;
            }
            return self.format_with(&first, &args[1..]);
        }
        let mut out = String::new();
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let s = self.top(arg);
            out.push_str(&s);
            if self.exhausted() {
                break;
            }
        }
        out
    }

    /// A top-level argument: strings raw, everything else inspected.
    fn top(&mut self, v: &Value<'js>) -> String {
        match v.as_string() {
            Some(s) => {
                let s = s.to_string().unwrap_or_default();
                self.spend(&s);
                s
            }
            None => self.inspect(v, DEFAULT_DEPTH),
        }
    }

    fn format_with(&mut self, fmt: &str, rest: &[Value<'js>]) -> String {
        let mut out = String::with_capacity(fmt.len() + 16);
        let mut next = 0;
        let mut chars = fmt.char_indices().peekable();
        let mut copied = 0;
        while let Some((i, c)) = chars.next() {
            if c != '%' {
                continue;
            }
            let Some(&(_, spec)) = chars.peek() else {
                break;
            };
            let piece = if spec == '%' {
                Some(String::from("%"))
            } else if next < rest.len() && "sdifjoOc".contains(spec) {
                let arg = &rest[next];
                next += 1;
                Some(match spec {
                    's' => self.spec_s(arg),
                    'd' => self.spec_number(arg, NumberSpec::Number),
                    'i' => self.spec_number(arg, NumberSpec::Int),
                    'f' => self.spec_number(arg, NumberSpec::Float),
                    'j' => self.spec_json(arg),
                    'o' => self.inspect(arg, 4),
                    'O' => self.inspect(arg, DEFAULT_DEPTH),
                    _ => String::new(), // %c: CSS, ignored as in Node.
                })
            } else {
                None
            };
            if let Some(piece) = piece {
                out.push_str(&fmt[copied..i]);
                out.push_str(&piece);
                chars.next();
                copied = i + 2;
            }
        }
        out.push_str(&fmt[copied..]);
        self.spend(&out);
        for arg in &rest[next..] {
            if self.exhausted() {
                break;
            }
            out.push(' ');
            out.push_str(&self.top(arg));
        }
        out
    }

    fn spec_s(&mut self, v: &Value<'js>) -> String {
        match v.type_of() {
            Type::String => v
                .as_string()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_default(),
            Type::Object | Type::Array | Type::Exception | Type::Promise | Type::Proxy => {
                self.inspect(v, 0)
            }
            _ => self.inspect(v, DEFAULT_DEPTH),
        }
    }

    fn spec_number(&mut self, v: &Value<'js>, spec: NumberSpec) -> String {
        if v.is_big_int() {
            return self.inspect(v, 0);
        }
        if v.is_symbol() || v.is_object() && spec == NumberSpec::Number {
            return "NaN".into();
        }
        let n = match spec {
            NumberSpec::Number => v.get::<Coerced<f64>>().map(|c| c.0).unwrap_or(f64::NAN),
            NumberSpec::Int => parse_int(&self.to_js_string(v)),
            NumberSpec::Float => parse_float(&self.to_js_string(v)),
        };
        self.number(n)
    }

    fn spec_json(&mut self, v: &Value<'js>) -> String {
        match self.ctx.json_stringify(v.clone()) {
            Ok(Some(s)) => s.to_string().unwrap_or_default(),
            Ok(None) => "undefined".into(),
            Err(_) => {
                let e = self.ctx.catch();
                let msg = self.error_header(&e);
                if msg.contains("circular") {
                    "[Circular]".into()
                } else {
                    msg
                }
            }
        }
    }

    fn to_js_string(&self, v: &Value<'js>) -> String {
        v.get::<Coerced<String>>().map(|c| c.0).unwrap_or_default()
    }

    /// `util.inspect(v, { depth })`.
    pub(crate) fn inspect(&mut self, v: &Value<'js>, depth: usize) -> String {
        let s = self.value(v, 0, depth, true);
        self.spend(&s);
        s
    }

    /// `quoted`: whether strings get quotes (everywhere but top-level console args).
    fn value(&mut self, v: &Value<'js>, level: usize, depth: usize, quoted: bool) -> String {
        match v.type_of() {
            Type::Uninitialized | Type::Undefined => "undefined".into(),
            Type::Null => "null".into(),
            Type::Bool => v.as_bool().unwrap_or(false).to_string(),
            Type::Int => v.as_int().unwrap_or(0).to_string(),
            Type::Float => self.number(v.as_float().unwrap_or(f64::NAN)),
            Type::String => {
                let s = v
                    .as_string()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_default();
                if quoted { quote(&s) } else { s }
            }
            Type::Symbol => self.symbol(v),
            Type::BigInt => format!("{}n", self.to_js_string(v)),
            Type::Array
            | Type::Object
            | Type::Function
            | Type::Constructor
            | Type::Promise
            | Type::Exception
            | Type::Proxy => self.object(v, level, depth),
            Type::Module | Type::Unknown => "[unknown]".into(),
        }
    }

    fn number(&self, n: f64) -> String {
        if n == 0.0 {
            return if n.is_sign_negative() { "-0" } else { "0" }.into();
        }
        if n.fract() == 0.0 && n.abs() < 1e15 {
            return format!("{}", n as i64);
        }
        if n.is_nan() {
            return "NaN".into();
        }
        // Everything else (fractions, exponents, infinities) as JavaScript spells it.
        Value::new_float(self.ctx.clone(), n)
            .get::<Coerced<String>>()
            .map(|c| c.0)
            .unwrap_or_else(|_| n.to_string())
    }

    fn symbol(&self, v: &Value<'js>) -> String {
        let desc = v
            .as_symbol()
            .and_then(|s| s.description().ok())
            .and_then(|d| d.as_string().and_then(|s| s.to_string().ok()));
        format!("Symbol({})", desc.unwrap_or_default())
    }

    fn object(&mut self, v: &Value<'js>, level: usize, depth: usize) -> String {
        if v.is_proxy() {
            // SAFETY: `v` is a live proxy of this context; the returned value is owned
            // and handed to `Value::from_raw`, which frees it.
            let target = unsafe {
                Value::from_raw(
                    self.ctx.clone(),
                    qjs::JS_GetProxyTarget(self.ctx.as_raw().as_ptr(), v.as_raw()),
                )
            };
            if target.is_exception() || !target.is_object() {
                self.ctx.catch();
                return "[Proxy]".into();
            }
            return self.object(&target, level, depth);
        }
        if let Some(pos) = self.ancestors.iter().position(|(a, _)| a == v) {
            let index = match self.ancestors[pos].1 {
                Some(i) => i,
                None => {
                    self.circular_count += 1;
                    self.ancestors[pos].1 = Some(self.circular_count);
                    self.circular_count
                }
            };
            return format!("[Circular *{index}]");
        }
        let Some(obj) = v.as_object().cloned() else {
            return "[unknown]".into();
        };
        if v.is_error() {
            return self.error(v);
        }
        let raw = v.as_raw();
        // SAFETY: these predicates only read the tag and class id of `raw`, a live value
        // of this runtime (held by `v` for the whole call).
        let (is_map, is_set, is_weak, is_date, is_regexp, typed, is_buffer) = unsafe {
            (
                qjs::JS_IsMap(raw),
                qjs::JS_IsSet(raw),
                qjs::JS_IsWeakMap(raw) || qjs::JS_IsWeakSet(raw),
                qjs::JS_IsDate(raw),
                qjs::JS_IsRegExp(raw),
                qjs::JS_GetTypedArrayType(raw) >= 0,
                qjs::JS_IsArrayBuffer(raw),
            )
        };
        let is_fn = v.is_function();
        let kind = if is_fn {
            Kind::Function
        } else if v.is_array() {
            Kind::Array
        } else if is_map {
            Kind::Map
        } else if is_set {
            Kind::Set
        } else if is_weak {
            Kind::Weak
        } else if is_date {
            return self.date(&obj);
        } else if is_regexp {
            return self.to_js_string(v);
        } else if v.is_promise() {
            Kind::Promise
        } else if typed {
            Kind::TypedArray
        } else if is_buffer {
            Kind::ArrayBuffer
        } else {
            Kind::Object
        };
        let ctor = constructor_name(&obj);
        let fn_base = if is_fn {
            Some(self.function_base(v, &obj))
        } else {
            None
        };
        if level > depth {
            return match (&kind, fn_base) {
                (_, Some(base)) => base,
                (Kind::Array, _) => format!("[{}]", ctor.as_deref().unwrap_or("Array")),
                _ => format!("[{}]", ctor.as_deref().unwrap_or("Object")),
            };
        }

        self.ancestors.push((v.clone(), None));
        self.current_depth = level;
        let mut prefix = String::new();
        let (open, close) = match kind {
            Kind::Array | Kind::TypedArray => ("[", "]"),
            _ => ("{", "}"),
        };
        let mut entries = Vec::new();
        let mut numeric = false;
        self.indent += 2;
        match kind {
            Kind::Function => {
                prefix = fn_base.unwrap_or_default();
                self.properties(&obj, level, depth, &mut entries);
                if entries.is_empty() {
                    self.indent -= 2;
                    self.ancestors.pop();
                    return prefix;
                }
            }
            Kind::Array | Kind::TypedArray => {
                let len: usize = obj
                    .get::<_, Option<f64>>("length")
                    .ok()
                    .flatten()
                    .unwrap_or(0.0) as usize;
                match (&kind, ctor.as_deref()) {
                    (Kind::Array, Some("Array")) => {}
                    (_, name) => prefix = format!("{}({len})", name.unwrap_or("Array")),
                }
                numeric = true;
                for i in 0..len.min(MAX_ITEMS) {
                    if self.exhausted() {
                        entries.push("...".into());
                        break;
                    }
                    let item: Value<'js> = obj
                        .get(i as u32)
                        .unwrap_or_else(|_| Value::new_undefined(self.ctx.clone()));
                    numeric &= item.is_number() || item.is_big_int();
                    let s = self.value(&item, level + 1, depth, true);
                    self.spend(&s);
                    entries.push(s);
                }
                if len > MAX_ITEMS {
                    let more = len - MAX_ITEMS;
                    entries.push(format!("... {more} more item{}", plural(more)));
                }
                if matches!(kind, Kind::Array) {
                    self.extra_keys(&obj, len, level, depth, &mut entries);
                }
            }
            Kind::Map | Kind::Set => {
                let is_map = matches!(kind, Kind::Map);
                let size = obj
                    .get::<_, Option<f64>>("size")
                    .ok()
                    .flatten()
                    .unwrap_or(0.0);
                prefix = format!(
                    "{}({size})",
                    ctor.as_deref()
                        .unwrap_or(if is_map { "Map" } else { "Set" })
                );
                let items = self.collect(v);
                for (n, item) in items.iter().enumerate() {
                    if n >= MAX_ITEMS {
                        let more = items.len() - MAX_ITEMS;
                        entries.push(format!("... {more} more item{}", plural(more)));
                        break;
                    }
                    if self.exhausted() {
                        entries.push("...".into());
                        break;
                    }
                    let s = if is_map {
                        let pair = item.as_object();
                        let k: Value<'js> = pair
                            .and_then(|p| p.get(0).ok())
                            .unwrap_or_else(|| Value::new_undefined(self.ctx.clone()));
                        let val: Value<'js> = pair
                            .and_then(|p| p.get(1).ok())
                            .unwrap_or_else(|| Value::new_undefined(self.ctx.clone()));
                        let k = self.value(&k, level + 1, depth, true);
                        let val = self.value(&val, level + 1, depth, true);
                        format!("{k} => {val}")
                    } else {
                        self.value(item, level + 1, depth, true)
                    };
                    self.spend(&s);
                    entries.push(s);
                }
            }
            Kind::Weak => {
                prefix = ctor.unwrap_or_else(|| "WeakMap".into());
                entries.push("<items unknown>".into());
            }
            Kind::Promise => {
                prefix = ctor.unwrap_or_else(|| "Promise".into());
                // SAFETY: `v` is a live promise of this context.
                let state = unsafe { qjs::JS_PromiseState(self.ctx.as_raw().as_ptr(), raw) };
                let result = || {
                    // SAFETY: as above; the result is an owned value freed by `Value`.
                    unsafe {
                        Value::from_raw(
                            self.ctx.clone(),
                            qjs::JS_PromiseResult(self.ctx.as_raw().as_ptr(), raw),
                        )
                    }
                };
                if state == qjs::JSPromiseStateEnum_JS_PROMISE_PENDING {
                    entries.push("<pending>".into());
                } else if state == qjs::JSPromiseStateEnum_JS_PROMISE_FULFILLED {
                    let r = result();
                    entries.push(self.value(&r, level + 1, depth, true));
                } else {
                    let r = result();
                    let s = self.value(&r, level + 1, depth, true);
                    entries.push(format!("<rejected> {s}"));
                }
                self.properties(&obj, level, depth, &mut entries);
            }
            Kind::ArrayBuffer => {
                prefix = ctor.unwrap_or_else(|| "ArrayBuffer".into());
                let n = obj
                    .get::<_, Option<f64>>("byteLength")
                    .ok()
                    .flatten()
                    .unwrap_or(0.0);
                entries.push(format!("byteLength: {n}"));
            }
            Kind::Object => {
                match ctor.as_deref() {
                    Some("Object") => {}
                    Some(name) => prefix = name.to_string(),
                    None if obj.get_prototype().is_none() => {
                        prefix = "[Object: null prototype]".into()
                    }
                    None => prefix = "Object".into(),
                }
                self.properties(&obj, level, depth, &mut entries);
            }
        }
        self.indent -= 2;
        let (_, reference) = self.ancestors.pop().unwrap_or((v.clone(), None));
        if let Some(n) = reference {
            prefix = if prefix.is_empty() {
                format!("<ref *{n}>")
            } else {
                format!("<ref *{n}> {prefix}")
            };
        }
        if entries.is_empty() {
            return if prefix.is_empty() {
                format!("{open}{close}")
            } else {
                format!("{prefix} {open}{close}")
            };
        }
        self.reduce(entries, &prefix, open, close, level, numeric, kind)
    }

    /// Node's `reduceToSingleString` (with `groupArrayElements` for arrays).
    #[allow(clippy::too_many_arguments)]
    fn reduce(
        &self,
        mut entries: Vec<String>,
        prefix: &str,
        open: &str,
        close: &str,
        level: usize,
        numeric: bool,
        kind: Kind,
    ) -> String {
        let count = entries.len();
        if matches!(kind, Kind::Array | Kind::TypedArray) && count > 6 {
            entries = self.group(entries, numeric);
        }
        let base = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix} ")
        };
        if self.current_depth.saturating_sub(level) < COMPACT && count == entries.len() {
            let start = entries.len() + self.indent + open.len() + prefix.len() + 10;
            let total: usize = entries.iter().map(|e| e.len()).sum::<usize>() + entries.len();
            if start + total <= BREAK_LENGTH && !entries.iter().any(|e| e.contains('\n')) {
                return format!("{base}{open} {} {close}", entries.join(", "));
            }
        }
        let indentation = format!("\n{}", " ".repeat(self.indent));
        format!(
            "{base}{open}{indentation}  {}{indentation}{close}",
            entries.join(&format!(",{indentation}  "))
        )
    }

    /// Node's `groupArrayElements`: many short items in aligned columns.
    fn group(&self, entries: Vec<String>, numeric: bool) -> Vec<String> {
        let has_more = entries.last().is_some_and(|e| e.starts_with("... "));
        let len = if has_more {
            entries.len() - 1
        } else {
            entries.len()
        };
        let sep = 2;
        let widths: Vec<usize> = entries[..len].iter().map(|e| e.chars().count()).collect();
        let total: usize = widths.iter().map(|w| w + sep).sum();
        let max = widths.iter().copied().max().unwrap_or(0);
        let actual_max = max + sep;
        if !(actual_max * 3 + self.indent < BREAK_LENGTH
            && (total as f64 / actual_max as f64 > 5.0 || max <= 6))
        {
            return entries;
        }
        let average_bias = (actual_max as f64 - total as f64 / entries.len() as f64).sqrt();
        let biased_max = (actual_max as f64 - 3.0 - average_bias).max(1.0);
        let columns = ((2.5 * biased_max * len as f64).sqrt() / biased_max)
            .round()
            .min(((BREAK_LENGTH - self.indent) / actual_max) as f64)
            .min((COMPACT * 4) as f64)
            .min(15.0) as usize;
        if columns <= 1 {
            return entries;
        }
        let col_width: Vec<usize> = (0..columns)
            .map(|c| {
                widths
                    .iter()
                    .skip(c)
                    .step_by(columns)
                    .copied()
                    .max()
                    .unwrap_or(0)
                    + sep
            })
            .collect();
        let mut rows = Vec::new();
        let mut i = 0;
        while i < len {
            let end = (i + columns).min(len);
            let mut row = String::new();
            for j in i..end {
                let w = col_width[j - i];
                let last = j == end - 1;
                let cell = if last {
                    entries[j].clone()
                } else {
                    format!("{}, ", entries[j])
                };
                let width = if last && numeric { w - sep } else { w };
                let pad = width.saturating_sub(cell.chars().count());
                if numeric {
                    row.push_str(&" ".repeat(pad));
                    row.push_str(&cell);
                } else {
                    row.push_str(&cell);
                    if !last {
                        row.push_str(&" ".repeat(pad));
                    }
                }
            }
            rows.push(row);
            i = end;
        }
        if has_more && let Some(more) = entries.last() {
            rows.push(more.clone());
        }
        rows
    }

    /// `key: value` for every own enumerable property (strings, then symbols).
    fn properties(
        &mut self,
        obj: &Object<'js>,
        level: usize,
        depth: usize,
        entries: &mut Vec<String>,
    ) {
        for (key, prop) in self.own_properties(obj) {
            if self.exhausted() {
                entries.push("...".into());
                return;
            }
            let s = self.property(&key, prop, level, depth);
            self.spend(&s);
            entries.push(s);
        }
    }

    /// Non-index own properties of an array (`[ 1, 2, foo: 'x' ]`).
    fn extra_keys(
        &mut self,
        obj: &Object<'js>,
        len: usize,
        level: usize,
        depth: usize,
        entries: &mut Vec<String>,
    ) {
        // Cheap check first: arrays rarely carry extra properties.
        let count = obj.keys::<Value<'js>>().take(len + 1).count();
        if count <= len {
            return;
        }
        for (key, prop) in self.own_properties(obj) {
            if key
                .as_string()
                .and_then(|s| s.to_string().ok())
                .is_some_and(|k| {
                    k.parse::<u32>()
                        .is_ok_and(|i| (i as usize) < len && i.to_string() == k)
                })
            {
                continue;
            }
            let s = self.property(&key, prop, level, depth);
            self.spend(&s);
            entries.push(s);
        }
    }

    fn property(
        &mut self,
        key: &Value<'js>,
        prop: Prop<'js>,
        level: usize,
        depth: usize,
    ) -> String {
        let key = if key.is_symbol() {
            format!("[{}]", self.symbol(key))
        } else {
            let k = key
                .as_string()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_default();
            if is_identifier(&k) { k } else { quote(&k) }
        };
        let value = match prop {
            Prop::Data(v) => self.value(&v, level + 1, depth, true),
            Prop::Accessor {
                get: true,
                set: true,
            } => "[Getter/Setter]".into(),
            Prop::Accessor { get: true, .. } => "[Getter]".into(),
            Prop::Accessor { .. } => "[Setter]".into(),
        };
        format!("{key}: {value}")
    }

    /// Own enumerable properties with their descriptors, without calling getters.
    fn own_properties(&self, obj: &Object<'js>) -> Vec<(Value<'js>, Prop<'js>)> {
        let ctx = self.ctx.as_raw().as_ptr();
        let raw = obj.as_raw();
        let mut tab: *mut qjs::JSPropertyEnum = std::ptr::null_mut();
        let mut len: u32 = 0;
        let flags =
            (qjs::JS_GPN_STRING_MASK | qjs::JS_GPN_SYMBOL_MASK | qjs::JS_GPN_ENUM_ONLY) as i32;
        // SAFETY: `obj` is a live non-proxy object of this context; on success QuickJS
        // fills `tab`/`len`, which are freed below with JS_FreePropertyEnum.
        let rc = unsafe { qjs::JS_GetOwnPropertyNames(ctx, &mut tab, &mut len, raw, flags) };
        if rc < 0 || tab.is_null() {
            self.ctx.catch();
            return Vec::new();
        }
        let mut out = Vec::with_capacity(len as usize);
        for i in 0..len as usize {
            // SAFETY: `tab` holds `len` entries.
            let atom = unsafe { (*tab.add(i)).atom };
            // SAFETY: `atom` is valid until the table is freed; the returned key is an
            // owned value that `Value` frees.
            let key = unsafe { Value::from_raw(self.ctx.clone(), qjs::JS_AtomToValue(ctx, atom)) };
            let mut desc = qjs::JSPropertyDescriptor {
                flags: 0,
                value: qjs::JS_UNDEFINED,
                getter: qjs::JS_UNDEFINED,
                setter: qjs::JS_UNDEFINED,
            };
            // SAFETY: as above; on a return of 1 the descriptor's three values are owned
            // by us and each is wrapped in a `Value` (which frees it) right away.
            let found = unsafe { qjs::JS_GetOwnProperty(ctx, &mut desc, raw, atom) };
            if found < 0 {
                self.ctx.catch();
                continue;
            }
            if found == 0 {
                continue;
            }
            // SAFETY: see above.
            let (value, getter, setter) = unsafe {
                (
                    Value::from_raw(self.ctx.clone(), desc.value),
                    Value::from_raw(self.ctx.clone(), desc.getter),
                    Value::from_raw(self.ctx.clone(), desc.setter),
                )
            };
            let prop = if desc.flags & qjs::JS_PROP_GETSET as i32 != 0 {
                Prop::Accessor {
                    get: !getter.is_undefined(),
                    set: !setter.is_undefined(),
                }
            } else {
                Prop::Data(value)
            };
            out.push((key, prop));
        }
        // SAFETY: `tab`/`len` came from JS_GetOwnPropertyNames above and are freed once.
        unsafe { qjs::JS_FreePropertyEnum(ctx, tab, len) };
        out
    }

    /// Entries of a Map (as `[k, v]` pairs) or values of a Set, via `Array.from`.
    fn collect(&self, v: &Value<'js>) -> Vec<Value<'js>> {
        let from: Option<Function<'js>> = self
            .ctx
            .globals()
            .get::<_, Object<'js>>("Array")
            .and_then(|a| a.get("from"))
            .ok();
        let Some(from) = from else {
            self.ctx.catch();
            return Vec::new();
        };
        let mut args = Args::new(self.ctx.clone(), 1);
        if args.push_arg(v.clone()).is_err() {
            return Vec::new();
        }
        match args.apply::<rquickjs::Array<'js>>(&from) {
            Ok(arr) => arr.iter::<Value<'js>>().filter_map(Result::ok).collect(),
            Err(_) => {
                self.ctx.catch();
                Vec::new()
            }
        }
    }

    fn date(&self, obj: &Object<'js>) -> String {
        let iso: Option<Function<'js>> = obj.get("toISOString").ok();
        let s = iso.and_then(|f| {
            let mut args = Args::new(self.ctx.clone(), 0);
            args.this(obj.clone()).ok()?;
            args.apply::<String>(&f).ok()
        });
        match s {
            Some(s) => s,
            None => {
                self.ctx.catch();
                "Invalid Date".into()
            }
        }
    }

    fn function_base(&self, v: &Value<'js>, obj: &Object<'js>) -> String {
        let name: String = obj
            .get::<_, Option<Coerced<String>>>("name")
            .ok()
            .flatten()
            .map(|c| c.0)
            .unwrap_or_default();
        if v.is_constructor() && self.to_js_string(v).starts_with("class") {
            return if name.is_empty() {
                "[class (anonymous)]".into()
            } else {
                format!("[class {name}]")
            };
        }
        // SAFETY: reads the class id of a live function value.
        let kind = if unsafe { qjs::JS_IsAsyncFunction(v.as_raw()) } {
            "AsyncFunction"
        } else {
            "Function"
        };
        if name.is_empty() {
            format!("[{kind} (anonymous)]")
        } else {
            format!("[{kind}: {name}]")
        }
    }

    /// `Error: message` (what `String(err)` gives), falling back sensibly.
    pub(crate) fn error_header(&self, v: &Value<'js>) -> String {
        match v.get::<Coerced<String>>() {
            Ok(c) => c.0,
            Err(_) => {
                self.ctx.catch();
                "Error".into()
            }
        }
    }

    /// An error as Node prints it: its header and stack, indented to the current level.
    fn error(&self, v: &Value<'js>) -> String {
        let header = self.error_header(v);
        let stack: Option<String> = v
            .as_object()
            .and_then(|o| o.get::<_, Option<String>>("stack").ok().flatten());
        let text = match stack {
            Some(s) if !s.trim().is_empty() => {
                if s.starts_with(&header) {
                    s.trim_end().to_string()
                } else {
                    format!("{header}\n{}", s.trim_end())
                }
            }
            _ => format!("[{header}]"),
        };
        if self.indent == 0 {
            text
        } else {
            text.replace('\n', &format!("\n{}", " ".repeat(self.indent)))
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Function,
    Array,
    TypedArray,
    Map,
    Set,
    Weak,
    Promise,
    ArrayBuffer,
    Object,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NumberSpec {
    Number,
    Int,
    Float,
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `obj.constructor.name` looked up on the prototype chain without calling getters
/// on the object itself; `None` for a null prototype or a nameless constructor.
fn constructor_name(obj: &Object<'_>) -> Option<String> {
    let mut proto = obj.get_prototype();
    let mut hops = 0;
    while let Some(p) = proto {
        if let Ok(Some(ctor)) = p.get::<_, Option<Object<'_>>>("constructor")
            && let Ok(Some(name)) = ctor.get::<_, Option<String>>("name")
            && !name.is_empty()
        {
            return Some(name);
        }
        hops += 1;
        if hops > 32 {
            break;
        }
        proto = p.get_prototype();
    }
    None
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A string as Node quotes it inside objects: single quotes unless the string has some.
pub(crate) fn quote(s: &str) -> String {
    let q = if !s.contains('\'') {
        '\''
    } else if !s.contains('"') {
        '"'
    } else if !s.contains('`') && !s.contains("${") {
        '`'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// `parseInt(s)` for the `%i` specifier.
fn parse_int(s: &str) -> f64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    match digits[..end].parse::<f64>() {
        Ok(n) if neg => -n,
        Ok(n) => n,
        Err(_) => f64::NAN,
    }
}

/// `parseFloat(s)` for the `%f` specifier: the longest numeric prefix.
fn parse_float(s: &str) -> f64 {
    let t = s.trim_start();
    let rest = t.strip_prefix(['+', '-']).unwrap_or(t);
    if rest.starts_with("Infinity") {
        return if t.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    let mut best = f64::NAN;
    for end in (1..=t.len().min(64)).rev() {
        if !t.is_char_boundary(end) {
            continue;
        }
        if let Ok(n) = t[..end].parse::<f64>()
            && !t[..end].contains(['i', 'I', 'n', 'N'])
        {
            best = n;
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_node() {
        assert_eq!(quote("x"), "'x'");
        assert_eq!(quote("it's"), "\"it's\"");
        assert_eq!(quote("a\nb"), "'a\\nb'");
    }

    #[test]
    fn number_parsing_for_specifiers() {
        assert_eq!(parse_int("42px"), 42.0);
        assert!(parse_int("px").is_nan());
        assert_eq!(parse_float("3.5e2x"), 350.0);
        assert_eq!(parse_float("-Infinity"), f64::NEG_INFINITY);
    }
}
