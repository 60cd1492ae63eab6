//! The Step Functions state machine of one pipeline (a standard workflow), which its
//! schedule starts and which drives its functions:
//!
//! - a run: unless another execution of it is under way, extract; while the answer says
//!   `continue`, hand the run to an execution named by its run id, which extracts again
//!   with `resume` until it is done; then load that run;
//! - a backfill (`{"backfill": {"from", "to"}}`): its date windows (step `windows`), each
//!   extracted as its own resumable run, up to `runtime.concurrency` at once (a `Map`),
//!   then their loads one by one in window order;
//! - Lambda's transient errors are retried with back-off; any other failure is sent, with
//!   the execution's input, to the dead-letter queue, and fails the execution.

use serde_json::{json, Map, Value};

use super::Deployed;

/// The placeholders of the definition, which its `DefinitionSubstitutions` fill.
pub(crate) const EXTRACT_ARN: &str = "ExtractFunctionArn";
pub(crate) const LOAD_ARN: &str = "LoadFunctionArn";
pub(crate) const QUEUE_URL: &str = "DeadLetterQueueUrl";

/// The errors of a Lambda invocation that another attempt may not meet.
const TRANSIENT: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

fn retry() -> Value {
    json!([{
        "ErrorEquals": TRANSIENT,
        "IntervalSeconds": 2,
        "MaxAttempts": 6,
        "BackoffRate": 2.0,
        "JitterStrategy": "FULL"
    }])
}

/// A failure goes to the state that records it.
fn catch() -> Value {
    json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Record failure"}])
}

/// Invoke function `arn` (a placeholder) with `payload`; `outer`: with the Catch (not
/// inside a `Map`, whose own Catch applies).
fn invoke(arn: &str, payload: Value, outer: bool) -> Value {
    let mut state = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": format!("${{{arn}}}"), "Payload": payload},
        "Retry": retry()
    });
    if outer {
        state["Catch"] = catch();
    }
    state
}

/// An extraction: its answer's status and run id become the state.
fn extract(payload: Value, next: &str, outer: bool) -> Value {
    let mut state = invoke(EXTRACT_ARN, payload, outer);
    state["ResultSelector"] = json!({"status.$": "$.Payload.status", "run_id.$": "$.Payload.run_id"});
    state["Next"] = json!(next);
    state
}

/// Go to `again` while the extraction says `continue`, else to `done`.
fn extracted(again: &str, done: &str) -> Value {
    json!({
        "Type": "Choice",
        "Choices": [{"Variable": "$.status", "StringEquals": "continue", "Next": again}],
        "Default": done
    })
}

/// The state machine's definition (Amazon States Language), with the placeholders
/// [`EXTRACT_ARN`], [`LOAD_ARN`] and [`QUEUE_URL`].
pub(crate) fn definition(d: &Deployed) -> Value {
    let name = d.name.as_str();
    let load = |outer: bool| {
        let mut state = invoke(
            LOAD_ARN,
            json!({"pipeline": name, "step": "load", "run_id.$": "$.run_id"}),
            outer,
        );
        state["OutputPath"] = json!("$.Payload");
        state["End"] = json!(true);
        state
    };
    let window = json!({
        "ProcessorConfig": {"Mode": "INLINE"},
        "StartAt": "Extract window",
        "States": {
            "Extract window": extract(json!({"pipeline": name, "step": "extract", "backfill.$": "$.backfill", "window.$": "$.window", "run_id.$": "$.run_id"}), "Window extracted", false),
            "Window extracted": extracted("Go on with window", "Window staged"),
            "Go on with window": extract(json!({"pipeline": name, "step": "extract", "resume.$": "$.run_id"}), "Window extracted", false),
            "Window staged": {"Type": "Succeed"}
        }
    });
    let mut windows = invoke(
        EXTRACT_ARN,
        json!({"pipeline": name, "step": "windows", "backfill.$": "$.backfill"}),
        true,
    );
    windows["ResultSelector"] = json!({"windows.$": "$.Payload.windows"});
    windows["Next"] = json!("Extract windows");
    json!({
        "Comment": format!("sluice pipeline {name}: extract (going on with the run while it says continue), then load; a backfill's date windows at once, then their loads in order"),
        "StartAt": "Start",
        "States": {
            "Start": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.backfill", "IsPresent": true, "Next": "Windows"},
                    {"Variable": "$.resume", "IsPresent": true, "Next": "Resumed"}
                ],
                "Default": "Under way"
            },
            "Under way": {
                "Type": "Task",
                "Comment": "a schedule that fires while an execution is under way starts no second run",
                "Resource": "arn:aws:states:::aws-sdk:sfn:listExecutions",
                "Parameters": {"StateMachineArn.$": "$$.StateMachine.Id", "StatusFilter": "RUNNING", "MaxResults": 2},
                "ResultSelector": {"running.$": "States.ArrayLength($.Executions)"},
                "ResultPath": "$.under_way",
                "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0}],
                "Catch": catch(),
                "Next": "Alone"
            },
            "Alone": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.under_way.running", "NumericGreaterThan": 1, "Next": "Skipped"}],
                "Default": "Extract"
            },
            "Skipped": {"Type": "Succeed", "Comment": "another execution of this pipeline is under way"},
            "Extract": extract(json!({"pipeline": name, "step": "extract"}), "Extracted", true),
            "Extracted": extracted("Hand over", "Load"),
            "Hand over": {
                "Type": "Task",
                "Comment": "the run goes on in an execution named by its run id",
                "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {"StateMachineArn.$": "$$.StateMachine.Id", "Name.$": "$.run_id", "Input": {"resume.$": "$.run_id"}},
                "ResultPath": null,
                "Retry": [{"ErrorEquals": ["StepFunctions.SdkClientException"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0}],
                "Catch": catch(),
                "End": true
            },
            "Resumed": {"Type": "Pass", "Parameters": {"run_id.$": "$.resume"}, "Next": "Go on"},
            "Go on": extract(json!({"pipeline": name, "step": "extract", "resume.$": "$.run_id"}), "Gone on", true),
            "Gone on": extracted("Go on", "Load"),
            "Load": load(true),
            "Windows": windows,
            "Extract windows": {
                "Type": "Map",
                "ItemsPath": "$.windows",
                "MaxConcurrency": d.concurrency,
                "ItemProcessor": window,
                "ResultPath": "$.staged",
                "Catch": catch(),
                "Next": "Load windows"
            },
            "Load windows": {
                "Type": "Map",
                "Comment": "in window order, one at a time",
                "ItemsPath": "$.staged",
                "MaxConcurrency": 1,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Load window",
                    "States": {"Load window": load(false)}
                },
                "ResultPath": "$.loaded",
                "Catch": catch(),
                "Next": "Backfilled"
            },
            "Backfilled": {"Type": "Succeed"},
            "Record failure": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {
                    "QueueUrl": format!("${{{QUEUE_URL}}}"),
                    "MessageBody": {"pipeline": name, "execution.$": "$$.Execution.Id", "input.$": "$$.Execution.Input", "error.$": "$.error"}
                },
                "ResultPath": null,
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": null, "Next": "Failed"}],
                "Next": "Failed"
            },
            "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
        }
    })
}

/// The state machine's name: the stack's name and the pipeline's.
fn name_of(d: &Deployed) -> Value {
    json!({"Fn::Sub": format!("${{AWS::StackName}}-{}", d.name)})
}

/// The state machine's ARN, from its name (its role cannot name it by reference).
fn arn_of(d: &Deployed, kind: &str) -> Value {
    json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:{kind}:${{AWS::StackName}}-{}", d.name)})
}

/// The state machine of `d`, its role (exactly its two functions, itself, the queue), and
/// the role its schedule starts it with.
pub(crate) fn resources(resources: &mut Map<String, Value>, d: &Deployed) {
    let id = d.state_machine_id();
    let (extract, load) = (d.function_id(&super::EXTRACT), d.function_id(&super::LOAD));
    let assume = |service: &str| {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"
        }]})
    };
    let boundary =
        json!({"Fn::If": ["HasPermissionsBoundary", {"Ref": "PermissionsBoundary"}, {"Ref": "AWS::NoValue"}]});
    resources.insert(
        format!("{id}Role"),
        json!({"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": assume("states.amazonaws.com"),
            "PermissionsBoundary": boundary,
            "Policies": [{"PolicyName": format!("sluice-{}-workflow", d.name), "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "InvokeOwnFunctions", "Effect": "Allow", "Action": "lambda:InvokeFunction",
                 "Resource": [{"Fn::GetAtt": [extract, "Arn"]}, {"Fn::GetAtt": [load, "Arn"]}]},
                {"Sid": "OwnExecutions", "Effect": "Allow", "Action": ["states:StartExecution", "states:ListExecutions"],
                 "Resource": arn_of(d, "stateMachine")},
                {"Sid": "DeadLetters", "Effect": "Allow", "Action": "sqs:SendMessage",
                 "Resource": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
            ]}}]
        }}),
    );
    resources.insert(
        id.clone(),
        json!({"Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": name_of(d),
                "StateMachineType": "STANDARD",
                "RoleArn": {"Fn::GetAtt": [format!("{id}Role"), "Arn"]},
                "Definition": definition(d),
                "DefinitionSubstitutions": {
                    EXTRACT_ARN: {"Fn::GetAtt": [extract, "Arn"]},
                    LOAD_ARN: {"Fn::GetAtt": [load, "Arn"]},
                    QUEUE_URL: {"Ref": "DeadLetterQueue"}
                }
            }
        }),
    );
    if d.schedule.is_some() {
        resources.insert(
            format!("{}ScheduleRole", d.id),
            json!({"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": assume("events.amazonaws.com"),
                "PermissionsBoundary": json!({"Fn::If": ["HasPermissionsBoundary", {"Ref": "PermissionsBoundary"}, {"Ref": "AWS::NoValue"}]}),
                "Policies": [{"PolicyName": format!("sluice-{}-schedule", d.name), "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Sid": "StartOwnStateMachine", "Effect": "Allow", "Action": "states:StartExecution", "Resource": {"Ref": id}}
                ]}}]
            }}),
        );
    }
}
