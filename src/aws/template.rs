//! `sluice deploy aws`: the CloudFormation template of a [`Plan`] — the staging bucket (or
//! an existing one); per pipeline an extract and a load function, each with a role that
//! reaches only that pipeline's objects, the state machine that drives them
//! ([`super::workflow`]) and the schedule that starts it; the secrets as a parameter, the
//! VPC settings for RDS, a dead-letter queue and error alarms.

use serde_json::{json, Map, Value};

use super::{
    Deployed, Function, Plan, BUCKET, EXTRACT, FUNCTION_VAR, LOAD, PIPELINE_VAR, SECRETS_VAR, SECRET_PARAMETER,
};

/// The `Metadata` telling checkov why a check does not apply to a resource, each
/// `(check, reason)`: the template's only exceptions, said where they apply.
fn checkov_skips(skips: &[(&str, &str)]) -> Value {
    json!({"checkov": {"skip": skips.iter().map(|(id, comment)| json!({"id": id, "comment": comment})).collect::<Vec<_>>()}})
}

/// `{"Ref": name}`.
fn r(name: &str) -> Value {
    json!({ "Ref": name })
}

/// `{"Fn::GetAtt": [resource, attribute]}`.
fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

/// The staging bucket's name: the stack's own or the existing one.
fn bucket_name() -> Value {
    json!({ "Fn::If": ["CreateBucket", r(BUCKET), r("ExistingBucket")] })
}

/// `Fn::Sub` of `text` with `${Bucket}` standing for the staging bucket's name.
fn sub_bucket(text: &str) -> Value {
    json!({ "Fn::Sub": [text, { "Bucket": bucket_name() }] })
}

fn role_id(function_id: &str) -> String {
    function_id.replace("Function", "Role")
}

fn log_group_id(function_id: &str) -> String {
    function_id.replace("Function", "LogGroup")
}

/// The statements of one pipeline's function's role beyond its logs: the staging actions
/// its step takes on that pipeline's objects only, the secrets, the dead-letter queue.
fn statements(d: &Deployed, f: &Function) -> Vec<Value> {
    let objects = sub_bucket(&format!(
        "arn:${{AWS::Partition}}:s3:::${{Bucket}}/${{StagingPrefix}}/{}/*",
        d.name
    ));
    let object_actions: Vec<&str> = if f.step == EXTRACT.step {
        // Stage parts (multipart for large ones), read a parent's parts back (`for_each`,
        // the `run` step), remove what a failed run staged.
        vec![
            "s3:PutObject",
            "s3:GetObject",
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
        ]
    } else {
        vec!["s3:GetObject"]
    };
    vec![
        json!({
            "Sid": "ListOwnPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": sub_bucket("arn:${AWS::Partition}:s3:::${Bucket}"),
            "Condition": {"StringLike": {"s3:prefix": [
                {"Fn::Sub": format!("${{StagingPrefix}}/{}/", d.name)},
                {"Fn::Sub": format!("${{StagingPrefix}}/{}/*", d.name)}
            ]}}
        }),
        json!({
            "Sid": "OwnObjects",
            "Effect": "Allow",
            "Action": object_actions,
            "Resource": objects
        }),
        json!({"Fn::If": ["HasKmsKey", {
            "Sid": "StagingKey",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": r("KmsKeyArn")
        }, r("AWS::NoValue")]}),
        json!({
            "Sid": "ReadSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": r(SECRET_PARAMETER)
        }),
        json!({
            "Sid": "DeadLetters",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": get_att("DeadLetterQueue", "Arn")
        }),
        json!({
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            // A log group's Arn ends in `:*`, which covers its streams.
            "Resource": get_att(&log_group_id(&d.function_id(f)), "Arn")
        }),
    ]
}

/// The role, log group, function, retry settings and error alarm of one pipeline's
/// function `f`.
fn function(resources: &mut Map<String, Value>, d: &Deployed, f: &Function, in_vpc: bool) {
    let id = d.function_id(f);
    let (role, logs) = (role_id(&id), log_group_id(&id));
    resources.insert(
        logs.clone(),
        json!({
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Metadata": checkov_skips(&[("CKV_AWS_158", "CloudWatch Logs encrypts log data at rest; sluice masks every secret in what it logs")]),
            "Properties": {"RetentionInDays": 30}
        }),
    );
    let mut role_props = json!({
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole"
            }]
        },
        "Policies": [{
            "PolicyName": format!("sluice-{}-{}", d.name, f.step),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements(d, f)}
        }]
    });
    role_props["PermissionsBoundary"] =
        json!({"Fn::If": ["HasPermissionsBoundary", r("PermissionsBoundary"), r("AWS::NoValue")]});
    if in_vpc {
        // The network interfaces a function in a VPC needs.
        role_props["ManagedPolicyArns"] = json!({"Fn::If": ["InVpc",
            [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"}],
            r("AWS::NoValue")]});
    }
    resources.insert(
        role.clone(),
        json!({"Type": "AWS::IAM::Role", "Properties": role_props}),
    );
    let mut env = Map::new();
    env.insert(SECRETS_VAR.into(), json!({"Fn::Join": [",", r(SECRET_PARAMETER)]}));
    env.insert(d.staging_var.clone(), sub_bucket("s3://${Bucket}/${StagingPrefix}"));
    env.insert(PIPELINE_VAR.into(), json!(d.name));
    env.insert(FUNCTION_VAR.into(), json!(f.step));
    // With a KMS key, the bucket's default encryption (SSE-KMS) applies to every part.
    env.insert(
        crate::stage::s3::SSE_VAR.into(),
        json!({"Fn::If": ["HasKmsKey", "bucket", "AES256"]}),
    );
    let (purpose, timeout) = if f.step == EXTRACT.step {
        ("extract: API to S3 staging, then the run's manifest", "ExtractTimeout")
    } else {
        (
            "load: a staged run into the warehouse, after its extraction",
            "LoadTimeout",
        )
    };
    let mut props = json!({
        // The package's key names its content (`sluice package`): the description says
        // which package a function runs.
        "Description": {"Fn::Sub": format!("sluice {purpose}, pipeline {} (package ${{CodeKey}})", d.name)},
        "Runtime": "provided.al2023",
        "Handler": "bootstrap",
        "Architectures": [r("Architecture")],
        "Code": {"S3Bucket": r("CodeBucket"), "S3Key": r("CodeKey")},
        "MemorySize": d.memory_mib.map(|m| json!(m)).unwrap_or_else(|| r("MemorySize")),
        "Timeout": d.timeout_s.map(|t| json!(t)).unwrap_or_else(|| r(timeout)),
        "Role": get_att(&role, "Arn"),
        "LoggingConfig": {"LogGroup": r(&logs)},
        "Environment": {"Variables": env}
    });
    if let Some(mib) = d.ephemeral_mib {
        props["EphemeralStorage"] = json!({"Size": mib});
    }
    // A slow run never overlaps the next schedule's (unless `runtime.concurrency`), and
    // a pipeline's loads take turns, in the order their manifests landed.
    props["ReservedConcurrentExecutions"] = json!(if f.step == EXTRACT.step { d.concurrency } else { 1 });
    if in_vpc {
        props["VpcConfig"] = json!({"Fn::If": ["InVpc",
            {"SubnetIds": r("SubnetIds"), "SecurityGroupIds": r("SecurityGroupIds")},
            r("AWS::NoValue")]});
    }
    let mut skips = vec![
        ("CKV_AWS_116", "failed events go to the dead-letter queue as the failure destination of its EventInvokeConfig, with their error; DeadLetterConfig would send them twice"),
        ("CKV_AWS_173", "the environment holds no secret: secret ARNs, the staging location and names; secrets are read from Secrets Manager"),
    ];
    if !in_vpc {
        skips.push((
            "CKV_AWS_117",
            "it reads a public API and S3 and never the warehouse, so it needs no VPC (and no NAT gateway)",
        ));
    }
    resources.insert(
        id.clone(),
        json!({"Type": "AWS::Lambda::Function", "Metadata": checkov_skips(&skips), "Properties": props}),
    );
    resources.insert(
        format!("{id}InvokeConfig"),
        json!({
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": r(&id),
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": 2,
                "MaximumEventAgeInSeconds": 3600,
                // A failed event, with why it failed, after its retries.
                "DestinationConfig": {"OnFailure": {"Destination": get_att("DeadLetterQueue", "Arn")}}
            }
        }),
    );
    resources.insert(
        format!("{id}ErrorsAlarm"),
        alarm(
            &format!(
                "sluice {} of pipeline {} failed (see its log group; failed events go to the dead-letter queue)",
                f.step, d.name
            ),
            ("AWS/Lambda", "Errors", "Sum"),
            ("FunctionName", r(&id)),
        ),
    );
}

/// An alarm when a metric (namespace, name, statistic) of one resource (dimension name,
/// value) is above zero in a 5-minute period.
fn alarm(
    description: &str,
    (namespace, metric, statistic): (&str, &str, &str),
    (dimension, value): (&str, Value),
) -> Value {
    json!({
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [{"Name": dimension, "Value": value}],
            "Statistic": statistic,
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": alarm_actions()
        }
    })
}

fn alarm_actions() -> Value {
    json!({"Fn::If": ["HasAlarmTopic", [r("AlarmTopicArn")], r("AWS::NoValue")]})
}

/// One pipeline's functions, its state machine and the schedule that starts it.
fn pipeline(resources: &mut Map<String, Value>, d: &Deployed) {
    function(resources, d, &EXTRACT, d.extract_reads_warehouse);
    function(resources, d, &LOAD, true);
    super::workflow::resources(resources, d);
    if let (Some(id), Some(expression)) = (d.schedule_rule(), &d.schedule) {
        let machine = d.state_machine_id();
        resources.insert(
            id,
            json!({"Type": "AWS::Events::Rule", "Properties": {
                "Description": format!("sluice: run pipeline {} on its schedule (its state machine)", d.name),
                "ScheduleExpression": expression,
                "State": "ENABLED",
                "Targets": [{
                    "Id": "run",
                    "Arn": r(&machine),
                    "RoleArn": get_att(&format!("{}ScheduleRole", d.id), "Arn"),
                    "Input": "{}"
                }]
            }}),
        );
    }
    if let Some(expression) = &d.schedule {
        let (period, periods) = freshness_window(expression);
        resources.insert(
            format!("{}FreshnessAlarm", d.id),
            {
                let description = format!(
                    "sluice: pipeline {} has loaded no run in {} hours ({FRESHNESS_SCHEDULES} times its schedule, {expression})",
                    d.name,
                    period * periods / 3600
                );
                let metric = (super::logs::NAMESPACE, super::logs::RUNS_LOADED, "Sum");
                let mut a = alarm(&description, metric, ("Pipeline", json!(d.name)));
                let props = &mut a["Properties"];
                props["Period"] = json!(period);
                props["EvaluationPeriods"] = json!(periods);
                props["Threshold"] = json!(1);
                props["ComparisonOperator"] = json!("LessThanThreshold");
                // No figure is no load.
                props["TreatMissingData"] = json!("breaching");
                a
            },
        );
    }
}

/// How many schedules without a loaded run raise the freshness alarm.
const FRESHNESS_SCHEDULES: u64 = 3;

/// The freshness alarm's period and number of periods for a schedule: `rate(…)` is
/// watched over [`FRESHNESS_SCHEDULES`] of its intervals, a `cron(…)` (whose interval
/// varies) over as many days; at most the 7 days an alarm can look back.
fn freshness_window(expression: &str) -> (u64, u64) {
    const DAY: u64 = 86_400;
    let interval = expression
        .strip_prefix("rate(")
        .and_then(|t| t.strip_suffix(')'))
        .and_then(|t| t.split_once(' '))
        .and_then(|(n, unit)| {
            let n: u64 = n.trim().parse().ok()?;
            let unit = match unit.trim().trim_end_matches('s') {
                "minute" => 60,
                "hour" => 3_600,
                "day" => DAY,
                _ => return None,
            };
            n.checked_mul(unit)
        })
        .unwrap_or(DAY);
    let window = interval.saturating_mul(FRESHNESS_SCHEDULES).min(7 * DAY);
    // Periods of whole minutes, at most a day each.
    let period = (window / FRESHNESS_SCHEDULES).clamp(60, DAY) / 60 * 60;
    (period, window.div_ceil(period).max(1))
}

/// What every pipeline shares: the staging bucket and its policy, the VPC endpoints,
/// the dead-letter queue and its alarm.
fn shared(resources: &mut Map<String, Value>) {
    resources.insert(
        BUCKET.into(),
        json!({
            "Type": "AWS::S3::Bucket",
            "Condition": "CreateBucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Metadata": checkov_skips(&[("CKV_AWS_18", "staged runs are written and read by the stack's own roles only; CloudTrail data events, not a second logging bucket, are the way to audit them")]),
            "Properties": {
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [{"Fn::If": ["HasKmsKey",
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": r("KmsKeyArn")}, "BucketKeyEnabled": true},
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]}]},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true,
                    "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true,
                    "RestrictPublicBuckets": true
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": [
                    {
                        "Id": "tidy",
                        "Status": "Enabled",
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                        // A deleted object leaves a marker once its old versions are gone.
                        "ExpiredObjectDeleteMarker": true
                    },
                    {"Fn::If": ["ExpireStaged", {
                        "Id": "expire-staged-runs",
                        "Status": "Enabled",
                        "Prefix": {"Fn::Sub": "${StagingPrefix}/"},
                        "ExpirationInDays": r("StagingExpirationDays")
                    }, r("AWS::NoValue")]}
                ]},
                "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": true}}
            }
        }),
    );
    resources.insert(
        format!("{BUCKET}Policy"),
        json!({
            "Type": "AWS::S3::BucketPolicy",
            "Condition": "CreateBucket",
            "Properties": {
                "Bucket": r(BUCKET),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [
                            get_att(BUCKET, "Arn"),
                            {"Fn::Sub": format!("${{{BUCKET}.Arn}}/*")}
                        ],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
                    }]
                }
            }
        }),
    );
    // What functions in private subnets need to reach S3 and Secrets Manager.
    resources.insert(
        "S3Endpoint".into(),
        json!({
            "Type": "AWS::EC2::VPCEndpoint",
            "Condition": "CreateEndpoints",
            "Properties": {
                "VpcEndpointType": "Gateway",
                "ServiceName": {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"},
                "VpcId": r("VpcId"),
                "RouteTableIds": r("RouteTableIds")
            }
        }),
    );
    resources.insert(
        "SecretsManagerEndpoint".into(),
        json!({
            "Type": "AWS::EC2::VPCEndpoint",
            "Condition": "CreateEndpoints",
            "Properties": {
                "VpcEndpointType": "Interface",
                "ServiceName": {"Fn::Sub": "com.amazonaws.${AWS::Region}.secretsmanager"},
                "VpcId": r("VpcId"),
                "SubnetIds": r("SubnetIds"),
                "SecurityGroupIds": r("SecurityGroupIds"),
                "PrivateDnsEnabled": true
            }
        }),
    );
    resources.insert(
        "DeadLetterQueue".into(),
        json!({
            "Type": "AWS::SQS::Queue",
            // Failed events are kept when the stack goes.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Metadata": checkov_skips(&[("CKV_AWS_27", "encrypted with SQS-managed keys (SqsManagedSseEnabled); the check knows only a KMS key")]),
            "Properties": {"MessageRetentionPeriod": 1_209_600, "SqsManagedSseEnabled": true}
        }),
    );
    resources.insert(
        "DeadLetterAlarm".into(),
        alarm(
            "sluice: an invocation failed after its retries; its event is in the dead-letter queue",
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum"),
            ("QueueName", get_att("DeadLetterQueue", "QueueName")),
        ),
    );
}

/// The template as YAML.
pub(crate) fn render(plan: &Plan) -> String {
    let variables = plan.variables();
    let listed = |must: bool| {
        variables
            .iter()
            .filter(|(_, m)| *m == must)
            .map(|(v, _)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (required, optional) = (listed(true), listed(false));
    let names: Vec<&str> = plan.pipelines.iter().map(|p| p.name.as_str()).collect();
    let mut resources = Map::new();
    shared(&mut resources);
    let mut outputs = Map::new();
    outputs.insert(
        "StagingLocation".into(),
        json!({"Value": sub_bucket("s3://${Bucket}/${StagingPrefix}")}),
    );
    for d in &plan.pipelines {
        pipeline(&mut resources, d);
        for f in [&EXTRACT, &LOAD] {
            let id = d.function_id(f);
            outputs.insert(format!("{id}Name"), json!({"Value": r(&id)}));
        }
        let machine = d.state_machine_id();
        outputs.insert(format!("{machine}Arn"), json!({"Value": r(&machine)}));
    }
    outputs.insert("DeadLetterQueueUrl".into(), json!({"Value": r("DeadLetterQueue")}));
    let mut code_key = json!({"Type": "String", "Description": "Key of the package in CodeBucket: the file `sluice package` wrote, named by its content (sluice-lambda-<hash>.zip), so that a new package is a new key and updates the functions"});
    if let Some((name, _)) = &plan.package {
        code_key["Default"] = json!(name);
    }
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("sluice pipelines {} on AWS Lambda: a state machine per pipeline extracts on its schedule (going on across invocations) into S3 staging, then loads (written by sluice deploy aws)", names.join(", ")),
        "Parameters": {
            "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the package that `sluice package` wrote"},
            "CodeKey": code_key,
            SECRET_PARAMETER: {
                "Type": "CommaDelimitedList",
                "Description": format!(
                    "ARNs of the Secrets Manager secrets (comma-separated), each a JSON object of variables or an RDS secret (which gives DATABASE_URL); together the variables the specs read: {}{}",
                    if required.is_empty() { "none required".to_string() } else { format!("{required} (required)") },
                    if optional.is_empty() { String::new() } else { format!("; {optional} (optional, else the spec's default)") }
                )
            },
            "ExistingBucket": {"Type": "String", "Default": "", "Description": "Stage in this existing bucket instead of creating one (it must send events to EventBridge)"},
            "StagingPrefix": {"Type": "String", "Default": super::DEFAULT_PREFIX, "AllowedPattern": "^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", "Description": "Key prefix of the staged runs in the bucket"},
            "SubnetIds": {"Type": "CommaDelimitedList", "Default": "", "Description": "Subnets for the functions that reach the database (RDS), when it is in a VPC"},
            "SecurityGroupIds": {"Type": "CommaDelimitedList", "Default": "", "Description": "Security groups for those functions (allowed into the database's security group)"},
            "Architecture": {"Type": "String", "Default": plan.package.as_ref().map_or("x86_64", |(_, a)| a), "AllowedValues": ["x86_64", "arm64"], "Description": "The bootstrap's architecture (sluice package prints it)"},
            "MemorySize": {"Type": "Number", "Default": 1024, "MinValue": 128, "MaxValue": 10240, "Description": "MiB of memory of every function whose spec sets no runtime.memory"},
            "ExtractTimeout": {"Type": "Number", "Default": 900, "MinValue": 10, "MaxValue": 900, "Description": "Seconds an extract function may run, where the spec sets no runtime.timeout"},
            "LoadTimeout": {"Type": "Number", "Default": 900, "MinValue": 10, "MaxValue": 900, "Description": "Seconds a load function may run, where the spec sets no runtime.timeout"},
            "AlarmTopicArn": {"Type": "String", "Default": "", "Description": "SNS topic the error alarms notify (none when empty)"},
            "PermissionsBoundary": {"Type": "String", "Default": "", "Description": "ARN of a managed policy set as the permissions boundary of every role the stack creates (none when empty)"},
            "KmsKeyArn": {"Type": "String", "Default": "", "Description": "A KMS key: the bucket the stack creates encrypts with it (SSE-KMS), and the roles may use it (none when empty: SSE-S3)"},
            "StagingExpirationDays": {"Type": "Number", "Default": 0, "MinValue": 0, "Description": "Remove staged runs (parts and manifests) this many days after they were written; 0 keeps them (sluice gc removes only incomplete runs)"},
            "CreateVpcEndpoints": {"Type": "String", "Default": "false", "AllowedValues": ["true", "false"], "Description": "With SubnetIds: create the S3 gateway endpoint and the Secrets Manager interface endpoint that functions in private subnets need (else they need a NAT gateway)"},
            "VpcId": {"Type": "String", "Default": "", "Description": "The VPC of SubnetIds, for CreateVpcEndpoints"},
            "RouteTableIds": {"Type": "CommaDelimitedList", "Default": "", "Description": "The route tables of SubnetIds, which the S3 gateway endpoint is added to (CreateVpcEndpoints)"}
        },
        "Rules": {
            "EndpointsNeedTheVpc": {
                "RuleCondition": {"Fn::Equals": [r("CreateVpcEndpoints"), "true"]},
                "Assertions": [{
                    "Assert": {"Fn::And": [
                        {"Fn::Not": [{"Fn::Equals": [r("VpcId"), ""]}]},
                        {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", r("RouteTableIds")]}, ""]}]},
                        {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", r("SubnetIds")]}, ""]}]}
                    ]},
                    "AssertDescription": "CreateVpcEndpoints=true needs VpcId, RouteTableIds and SubnetIds"
                }]
            }
        },
        "Conditions": {
            "CreateBucket": {"Fn::Equals": [r("ExistingBucket"), ""]},
            "InVpc": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", r("SubnetIds")]}, ""]}]},
            "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [r("AlarmTopicArn"), ""]}]},
            "HasPermissionsBoundary": {"Fn::Not": [{"Fn::Equals": [r("PermissionsBoundary"), ""]}]},
            "HasKmsKey": {"Fn::Not": [{"Fn::Equals": [r("KmsKeyArn"), ""]}]},
            "ExpireStaged": {"Fn::Not": [{"Fn::Equals": [r("StagingExpirationDays"), 0]}]},
            "CreateEndpoints": {"Fn::And": [{"Fn::Equals": [r("CreateVpcEndpoints"), "true"]}, {"Condition": "InVpc"}]}
        },
        "Resources": resources,
        "Outputs": outputs
    });
    // Through JSON text: serde_json's exact numbers have no YAML form of their own.
    let yaml = serde_yaml::from_str::<serde_yaml::Value>(&template.to_string())
        .and_then(|v| serde_yaml::to_string(&v))
        .unwrap_or_default();
    format!(
        "# Written by `sluice deploy aws` from {}; regenerate it rather than edit it.\n{yaml}",
        names.join(", ")
    )
}
