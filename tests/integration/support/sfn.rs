//! A small AWS Step Functions executor: it follows a state machine definition as
//! `sluice deploy aws` emits it (Amazon States Language: Task, Choice, Pass, Map, Succeed,
//! Fail, with Retry and Catch, InputPath / Parameters / ResultSelector / ResultPath /
//! OutputPath, `$$` context paths and `States.ArrayLength`) and invokes the functions it
//! names through their Runtime API test servers, so that a test runs exactly what the
//! template says. What it does not know (another state type, a path form, a service
//! integration) panics, so that a definition using it fails the test instead of running
//! differently. Retry waits a hundredth of the interval the definition asks.
//!
//! Service integrations: `lambda:invoke` (the function's answer as `Payload`; its error
//! as the error name `errorType`, the cause the error's JSON), `states:startExecution`
//! (queued; names are unique), `aws-sdk:sfn:listExecutions` (the executions running or
//! queued) and `sqs:sendMessage` (kept as the dead letters).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::lambda::RuntimeApi;

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Succeeded(Value),
    Failed { error: String, cause: String },
}

#[derive(Debug, Clone)]
pub struct Execution {
    pub name: String,
    pub input: Value,
    pub ended: Option<Ended>,
    /// The states it entered, in order (a Map's iterations' too).
    pub states: Vec<String>,
}

/// One Lambda invocation the executor made.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub function: String,
    pub payload: Value,
    pub answer: Result<Value, String>,
}

/// An error of a state: its name and cause.
struct Error {
    name: String,
    cause: String,
}

pub struct Executor<'a> {
    definition: Value,
    arn: String,
    /// The functions by the ARN the definition names, each with the time an invocation gets.
    functions: HashMap<String, (&'a RuntimeApi, Duration)>,
    pub executions: Mutex<Vec<Execution>>,
    queued: Mutex<VecDeque<usize>>,
    pub invoked: Mutex<Vec<Invoked>>,
    pub dead_letters: Mutex<Vec<Value>>,
    /// The next this many invocations are refused as Lambda refuses them when throttled.
    throttle: Mutex<u32>,
    /// Iterations of a Map under way, and the most at once.
    in_map: Mutex<(usize, usize)>,
}

fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let rest = path
        .strip_prefix('$')
        .unwrap_or_else(|| panic!("a path not from `$`: {path}"));
    if rest.is_empty() {
        return Some(v);
    }
    let rest = rest
        .strip_prefix('.')
        .unwrap_or_else(|| panic!("a path form this executor does not know: {path}"));
    rest.split('.').try_fold(v, |v, key| {
        assert!(
            !key.contains('[') && !key.is_empty(),
            "a path form this executor does not know: {path}"
        );
        v.get(key)
    })
}

impl<'a> Executor<'a> {
    /// The state machine `definition` (its placeholders filled with these function ARNs).
    pub fn new(definition: Value, functions: &[(&str, &'a RuntimeApi, Duration)]) -> Self {
        Executor {
            definition,
            arn: "arn:aws:states:us-east-1:123456789012:stateMachine:sluice-test".into(),
            functions: functions
                .iter()
                .map(|(arn, r, t)| (arn.to_string(), (*r, *t)))
                .collect(),
            executions: Mutex::default(),
            queued: Mutex::default(),
            invoked: Mutex::default(),
            dead_letters: Mutex::default(),
            throttle: Mutex::new(0),
            in_map: Mutex::default(),
        }
    }

    /// Refuse the next `n` Lambda invocations with `Lambda.TooManyRequestsException`.
    pub fn throttle(&self, n: u32) {
        *self.throttle.lock().unwrap() = n;
    }

    /// The most Map iterations that were under way at once.
    pub fn most_at_once(&self) -> usize {
        self.in_map.lock().unwrap().1
    }

    /// Start an execution (queued, as StartExecution does); `false` when the name is taken.
    pub fn start(&self, name: &str, input: Value) -> bool {
        let mut all = self.executions.lock().unwrap();
        if all.iter().any(|e| e.name == name) {
            return false;
        }
        all.push(Execution {
            name: name.to_string(),
            input,
            ended: None,
            states: Vec::new(),
        });
        self.queued.lock().unwrap().push_back(all.len() - 1);
        true
    }

    /// Run the queued executions, and those they start, one after another, to their end.
    pub fn run(&self) {
        while self.run_one(None) {}
    }

    /// Run the next queued execution (or the one named so) to its end, while the others
    /// wait; `false` when none is queued.
    pub fn run_one(&self, name: Option<&str>) -> bool {
        {
            let i = {
                let mut queued = self.queued.lock().unwrap();
                let all = self.executions.lock().unwrap();
                let at = queued.iter().position(|i| name.is_none_or(|n| all[*i].name == n));
                at.and_then(|at| queued.remove(at))
            };
            let Some(i) = i else {
                return false;
            };
            let (name, input) = {
                let all = self.executions.lock().unwrap();
                (all[i].name.clone(), all[i].input.clone())
            };
            let context = json!({
                "Execution": {"Id": format!("{}:{name}", self.arn.replace(":stateMachine:", ":execution:")), "Name": name, "Input": input},
                "StateMachine": {"Id": self.arn}
            });
            let ended = match self.machine(&self.definition, input, &context, i) {
                Ok(out) => Ended::Succeeded(out),
                Err(e) => Ended::Failed {
                    error: e.name,
                    cause: e.cause,
                },
            };
            self.executions.lock().unwrap()[i].ended = Some(ended);
        }
        true
    }

    /// Follow `machine` (a definition, or a Map's ItemProcessor) from its StartAt.
    fn machine(&self, machine: &Value, mut input: Value, ctx: &Value, exec: usize) -> Result<Value, Error> {
        let states = &machine["States"];
        let mut name = machine["StartAt"].as_str().expect("StartAt").to_string();
        loop {
            self.executions.lock().unwrap()[exec].states.push(name.clone());
            let state = states.get(&name).unwrap_or_else(|| panic!("no state `{name}`"));
            let kind = state["Type"].as_str().unwrap();
            let next = match kind {
                "Choice" => Some(choose(state, &input)),
                "Succeed" => return Ok(output(state, input)),
                "Fail" => {
                    let text = |path: &str, plain: &str| {
                        state
                            .get(path)
                            .and_then(|p| at(&input, p.as_str().unwrap()))
                            .or(state.get(plain))
                            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                            .unwrap_or_default()
                    };
                    return Err(Error {
                        name: text("ErrorPath", "Error"),
                        cause: text("CausePath", "Cause"),
                    });
                }
                "Pass" | "Task" | "Map" => match self.work(state, kind, &input, ctx, exec) {
                    Ok(result) => {
                        input = output(state, place(state, input, result));
                        state["Next"].as_str().map(str::to_string)
                    }
                    Err(e) => match caught(state, &e) {
                        Some((result_path, next)) => {
                            let error = json!({"Error": e.name, "Cause": e.cause});
                            input = put(input, result_path, error);
                            Some(next)
                        }
                        None => return Err(e),
                    },
                },
                other => panic!("a state type this executor does not know: {other}"),
            };
            match next {
                Some(n) => name = n,
                None => {
                    assert_eq!(state["End"], true, "state `{name}` has neither Next nor End");
                    return Ok(input);
                }
            }
        }
    }

    /// A Pass, Task or Map state's result (before ResultPath), its Retry applied.
    fn work(&self, state: &Value, kind: &str, input: &Value, ctx: &Value, exec: usize) -> Result<Value, Error> {
        let effective = match state.get("InputPath") {
            Some(p) => at(input, p.as_str().unwrap()).cloned().unwrap_or(Value::Null),
            None => input.clone(),
        };
        let mut attempts: HashMap<usize, u64> = HashMap::new();
        loop {
            let result = match kind {
                "Pass" => Ok(match state.get("Parameters") {
                    Some(p) => fill(p, &effective, ctx),
                    None => state.get("Result").cloned().unwrap_or(effective.clone()),
                }),
                "Task" => {
                    let params = state
                        .get("Parameters")
                        .map(|p| fill(p, &effective, ctx))
                        .unwrap_or(effective.clone());
                    self.task(state["Resource"].as_str().unwrap(), params)
                }
                _ => self.map(state, &effective, ctx, exec),
            };
            let e = match result {
                Ok(r) => {
                    return Ok(match state.get("ResultSelector") {
                        Some(s) => fill(s, &r, ctx),
                        None => r,
                    })
                }
                Err(e) => e,
            };
            let retrier = state["Retry"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .find(|(_, r)| matches(r, &e.name));
            let Some((i, r)) = retrier else { return Err(e) };
            let n = attempts.entry(i).or_default();
            let max = r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
            if *n >= max {
                return Err(e);
            }
            let interval = r.get("IntervalSeconds").and_then(Value::as_f64).unwrap_or(1.0);
            let backoff = r.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0);
            std::thread::sleep(Duration::from_secs_f64(interval * backoff.powi(*n as i32) / 100.0));
            *n += 1;
        }
    }

    fn task(&self, resource: &str, params: Value) -> Result<Value, Error> {
        match resource {
            "arn:aws:states:::lambda:invoke" => self.invoke(params),
            "arn:aws:states:::states:startExecution" => {
                assert_eq!(params["StateMachineArn"], json!(self.arn), "it starts only itself");
                let name = params["Name"].as_str().expect("a Name").to_string();
                match self.start(&name, params["Input"].clone()) {
                    true => Ok(json!({"ExecutionArn": format!("{}:{name}", self.arn), "StartDate": 0})),
                    false => Err(Error {
                        name: "StepFunctions.ExecutionAlreadyExistsException".into(),
                        cause: format!("execution {name} already exists"),
                    }),
                }
            }
            "arn:aws:states:::aws-sdk:sfn:listExecutions" => {
                assert_eq!(params["StateMachineArn"], json!(self.arn));
                assert_eq!(params["StatusFilter"], "RUNNING");
                let all = self.executions.lock().unwrap();
                let running: Vec<Value> = all
                    .iter()
                    .filter(|e| e.ended.is_none())
                    .map(|e| json!({"Name": e.name, "Status": "RUNNING"}))
                    .take(params["MaxResults"].as_u64().unwrap_or(100) as usize)
                    .collect();
                Ok(json!({"Executions": running}))
            }
            "arn:aws:states:::sqs:sendMessage" => {
                assert!(params["QueueUrl"].as_str().is_some_and(|q| !q.is_empty()));
                self.dead_letters.lock().unwrap().push(params["MessageBody"].clone());
                Ok(json!({"MessageId": "m-1"}))
            }
            other => panic!("a Task resource this executor does not know: {other}"),
        }
    }

    fn invoke(&self, params: Value) -> Result<Value, Error> {
        let function = params["FunctionName"].as_str().expect("FunctionName").to_string();
        let (runtime, time) = self
            .functions
            .get(&function)
            .unwrap_or_else(|| panic!("no function {function}"));
        let payload = params["Payload"].clone();
        {
            let mut throttle = self.throttle.lock().unwrap();
            if *throttle > 0 {
                *throttle -= 1;
                let cause = "Rate Exceeded.".to_string();
                self.invoked.lock().unwrap().push(Invoked {
                    function,
                    payload,
                    answer: Err("Lambda.TooManyRequestsException".into()),
                });
                return Err(Error {
                    name: "Lambda.TooManyRequestsException".into(),
                    cause,
                });
            }
        }
        let out = runtime.outcome(&runtime.invoke(payload.clone(), *time), Duration::from_secs(300));
        let answer = match out.kind.as_str() {
            "response" => Ok(out.body.clone()),
            _ => Err(out.body["errorType"].as_str().unwrap_or("Unknown").to_string()),
        };
        self.invoked.lock().unwrap().push(Invoked {
            function,
            payload,
            answer: answer.clone(),
        });
        match answer {
            Ok(body) => Ok(json!({"StatusCode": 200, "Payload": body})),
            Err(name) => Err(Error {
                name,
                cause: out.body.to_string(),
            }),
        }
    }

    /// A Map state: its iterations, at most `MaxConcurrency` at once, the results in order.
    fn map(&self, state: &Value, input: &Value, ctx: &Value, exec: usize) -> Result<Value, Error> {
        let items = at(input, state["ItemsPath"].as_str().unwrap_or("$"))
            .and_then(Value::as_array)
            .cloned()
            .expect("the Map's items are a list");
        assert!(state.get("ItemSelector").is_none() && state.get("Parameters").is_none());
        let processor = &state["ItemProcessor"];
        assert_eq!(processor["ProcessorConfig"]["Mode"], "INLINE");
        let most = state["MaxConcurrency"].as_u64().unwrap_or(0) as usize;
        let most = if most == 0 { items.len().max(1) } else { most };
        let results: Mutex<Vec<Option<Result<Value, Error>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
        let next = Mutex::new(0usize);
        std::thread::scope(|s| {
            for _ in 0..most.min(items.len()) {
                s.spawn(|| loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        if *n >= items.len() || results.lock().unwrap().iter().flatten().any(|r| r.is_err()) {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    {
                        let mut m = self.in_map.lock().unwrap();
                        m.0 += 1;
                        m.1 = m.1.max(m.0);
                    }
                    let r = self.machine(processor, items[i].clone(), ctx, exec);
                    self.in_map.lock().unwrap().0 -= 1;
                    results.lock().unwrap()[i] = Some(r);
                });
            }
        });
        let mut out = Vec::new();
        for r in results.into_inner().unwrap().into_iter().flatten() {
            out.push(r?);
        }
        Ok(Value::Array(out))
    }
}

/// A Choice state's next state for `input`.
fn choose(state: &Value, input: &Value) -> String {
    for rule in state["Choices"].as_array().unwrap() {
        let v = at(input, rule["Variable"].as_str().unwrap());
        let holds = if let Some(present) = rule.get("IsPresent") {
            v.is_some() == present.as_bool().unwrap()
        } else if let Some(s) = rule.get("StringEquals") {
            v == Some(s)
        } else if let Some(n) = rule.get("NumericGreaterThan") {
            v.and_then(Value::as_f64).is_some_and(|x| x > n.as_f64().unwrap())
        } else {
            panic!("a Choice rule this executor does not know: {rule}")
        };
        if holds {
            return rule["Next"].as_str().unwrap().to_string();
        }
    }
    state["Default"]
        .as_str()
        .expect("no rule held and no Default")
        .to_string()
}

/// Whether a Retry or Catch entry takes error `name`.
fn matches(entry: &Value, name: &str) -> bool {
    entry["ErrorEquals"].as_array().unwrap().iter().any(|e| {
        let e = e.as_str().unwrap();
        e == "States.ALL" || e == name || (e == "States.TaskFailed" && name != "States.Timeout")
    })
}

/// The Catch entry taking `e`: its ResultPath and Next.
fn caught<'s>(state: &'s Value, e: &Error) -> Option<(Option<&'s str>, String)> {
    let c = state["Catch"].as_array()?.iter().find(|c| matches(c, &e.name))?;
    let path = match c.get("ResultPath") {
        Some(Value::Null) => None,
        Some(p) => Some(p.as_str().unwrap()),
        None => Some("$"),
    };
    Some((path, c["Next"].as_str().unwrap().to_string()))
}

/// `value` at `path` of `input` (`None`: the input unchanged; `$`: the value itself).
fn put(input: Value, path: Option<&str>, value: Value) -> Value {
    let Some(path) = path else { return input };
    if path == "$" {
        return value;
    }
    let keys: Vec<&str> = path
        .strip_prefix("$.")
        .expect("a ResultPath from `$.`")
        .split('.')
        .collect();
    let mut root = input;
    let mut cur = &mut root;
    for (i, k) in keys.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let obj = cur.as_object_mut().unwrap();
        if i == keys.len() - 1 {
            obj.insert(k.to_string(), value);
            break;
        }
        cur = obj.entry(k.to_string()).or_insert(Value::Object(Map::new()));
    }
    root
}

/// A state's ResultPath applied.
fn place(state: &Value, input: Value, result: Value) -> Value {
    match state.get("ResultPath") {
        Some(Value::Null) => input,
        Some(p) => put(input, Some(p.as_str().unwrap()), result),
        None => result,
    }
}

/// A state's OutputPath applied.
fn output(state: &Value, v: Value) -> Value {
    match state.get("OutputPath") {
        Some(p) => at(&v, p.as_str().unwrap()).cloned().unwrap_or(Value::Null),
        None => v,
    }
}

/// A payload template filled: `key.$` fields from paths of `input` (`$$.` of the context)
/// or `States.ArrayLength(path)`.
fn fill(template: &Value, input: &Value, ctx: &Value) -> Value {
    match template {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.strip_suffix(".$") {
                    Some(key) => {
                        let expr = v.as_str().unwrap();
                        let value = if let Some(inner) = expr
                            .strip_prefix("States.ArrayLength(")
                            .and_then(|e| e.strip_suffix(')'))
                        {
                            json!(at(input, inner).and_then(Value::as_array).map_or(0, Vec::len))
                        } else if let Some(rest) = expr.strip_prefix("$$") {
                            at(ctx, &format!("${rest}"))
                                .cloned()
                                .unwrap_or_else(|| panic!("no context {expr}"))
                        } else {
                            assert!(
                                !expr.starts_with("States."),
                                "an intrinsic this executor does not know: {expr}"
                            );
                            at(input, expr)
                                .cloned()
                                .unwrap_or_else(|| panic!("{expr} is not in {input}"))
                        };
                        out.insert(key.to_string(), value);
                    }
                    None => {
                        out.insert(k.clone(), fill(v, input, ctx));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, input, ctx)).collect()),
        other => other.clone(),
    }
}

/// The definition of state machine `id` in a template `sluice deploy aws` wrote, its
/// `DefinitionSubstitutions` filled with `values` (placeholder → text).
pub fn definition(template: &serde_yaml::Value, id: &str, values: &[(&str, &str)]) -> Value {
    let props = &template["Resources"][id]["Properties"];
    let mut text = serde_json::to_string(&serde_json::to_value(&props["Definition"]).unwrap()).unwrap();
    let subs = props["DefinitionSubstitutions"]
        .as_mapping()
        .expect("DefinitionSubstitutions");
    for (k, _) in subs {
        let k = k.as_str().unwrap();
        let v = values
            .iter()
            .find(|(n, _)| *n == k)
            .unwrap_or_else(|| panic!("no value for ${{{k}}}"))
            .1;
        text = text.replace(&format!("${{{k}}}"), v);
    }
    assert!(!text.contains("${"), "a placeholder left: {text}");
    serde_json::from_str(&text).unwrap()
}
