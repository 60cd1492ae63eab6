//! `sluice deploy aws`: the CloudFormation template of a [`Plan`] — the staging bucket (or
//! an existing one), the extract and load functions with least-privilege roles, a schedule
//! per pipeline, the rule that loads a run when its manifest lands, the secret as a
//! parameter, the VPC settings for RDS, a dead-letter queue and error alarms.

use serde_json::{json, Map, Value};

use super::{Deployed, Function, Plan, BUCKET, EXTRACT, LOAD, SECRET_PARAMETER};

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

fn role_id(f: &Function) -> String {
    f.logical_id.replace("Function", "Role")
}

fn log_group_id(f: &Function) -> String {
    f.logical_id.replace("Function", "LogGroup")
}

/// The statements of a function's role beyond its logs: the staging actions its step
/// takes, the secret, the dead-letter queue.
fn statements(f: &Function) -> Vec<Value> {
    let objects = sub_bucket("arn:${AWS::Partition}:s3:::${Bucket}/${StagingPrefix}/*");
    let object_actions: Vec<&str> = if f.step == EXTRACT.step {
        // Stage parts (multipart for large ones), remove what a failed run staged.
        vec!["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"]
    } else {
        vec!["s3:GetObject"]
    };
    vec![
        json!({
            "Sid": "ListStagingPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": sub_bucket("arn:${AWS::Partition}:s3:::${Bucket}"),
            "Condition": {"StringLike": {"s3:prefix": [
                {"Fn::Sub": "${StagingPrefix}/"},
                {"Fn::Sub": "${StagingPrefix}/*"}
            ]}}
        }),
        json!({
            "Sid": "StagedObjects",
            "Effect": "Allow",
            "Action": object_actions,
            "Resource": objects
        }),
        json!({
            "Sid": "ReadSecret",
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
            "Resource": get_att(&log_group_id(f), "Arn")
        }),
    ]
}

/// The role, log group, function, retry settings and error alarm of one function.
fn function(
    resources: &mut Map<String, Value>,
    f: &Function,
    in_vpc: bool,
    timeout: &str,
    purpose: &str,
    env: &Map<String, Value>,
) {
    let role = role_id(f);
    let logs = log_group_id(f);
    resources.insert(
        logs.clone(),
        json!({
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
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
            "PolicyName": format!("sluice-{}", f.step),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements(f)}
        }]
    });
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
    let mut props = json!({
        "Description": purpose,
        "Runtime": "provided.al2023",
        "Handler": "bootstrap",
        "Architectures": [r("Architecture")],
        "Code": {"S3Bucket": r("CodeBucket"), "S3Key": r("CodeKey")},
        "MemorySize": r("MemorySize"),
        "Timeout": r(timeout),
        "Role": get_att(&role, "Arn"),
        "LoggingConfig": {"LogGroup": r(&logs)},
        "DeadLetterConfig": {"TargetArn": get_att("DeadLetterQueue", "Arn")},
        "Environment": {"Variables": env}
    });
    if in_vpc {
        props["VpcConfig"] = json!({"Fn::If": ["InVpc",
            {"SubnetIds": r("SubnetIds"), "SecurityGroupIds": r("SecurityGroupIds")},
            r("AWS::NoValue")]});
    }
    resources.insert(
        f.logical_id.to_string(),
        json!({"Type": "AWS::Lambda::Function", "Properties": props}),
    );
    resources.insert(
        format!("{}InvokeConfig", f.logical_id),
        json!({
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": r(f.logical_id),
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": 2,
                "MaximumEventAgeInSeconds": 3600
            }
        }),
    );
    resources.insert(
        format!("{}ErrorsAlarm", f.logical_id),
        alarm(
            &format!(
                "sluice {} failed (see its log group; failed events go to the dead-letter queue)",
                f.step
            ),
            ("AWS/Lambda", "Errors", "Sum"),
            ("FunctionName", r(f.logical_id)),
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

/// A rule starting `f`, and the permission that lets EventBridge invoke it.
fn rule(resources: &mut Map<String, Value>, id: &str, f: &Function, mut props: Value, input: Option<&Value>) {
    let mut target = json!({"Id": f.step, "Arn": get_att(f.logical_id, "Arn")});
    if let Some(input) = input {
        target["Input"] = Value::String(input.to_string());
    }
    props["State"] = json!("ENABLED");
    props["Targets"] = json!([target]);
    resources.insert(
        id.to_string(),
        json!({"Type": "AWS::Events::Rule", "Properties": props}),
    );
    resources.insert(
        format!("{id}Permission"),
        json!({
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": r(f.logical_id),
                "Principal": "events.amazonaws.com",
                "SourceArn": get_att(id, "Arn")
            }
        }),
    );
}

/// The schedule and the manifest trigger of one pipeline.
fn pipeline(resources: &mut Map<String, Value>, d: &Deployed) {
    if let (Some(id), Some(expression)) = (d.schedule_rule(), &d.schedule) {
        let props = json!({
            "Description": format!("sluice: extract pipeline {} on its schedule", d.name),
            "ScheduleExpression": expression
        });
        rule(resources, &id, &EXTRACT, props, Some(&d.scheduled_event()));
    }
    let props = json!({
        "Description": format!("sluice: load each run of pipeline {} when its manifest lands", d.name),
        "EventPattern": {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": [bucket_name()]},
                "object": {"key": [{"prefix": {"Fn::Sub": format!("${{StagingPrefix}}/{}", d.manifest_prefix())}}]}
            }
        }
    });
    rule(resources, &d.manifest_rule(), &LOAD, props, None);
}

/// The template as YAML.
pub fn render(plan: &Plan) -> String {
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
    resources.insert(
        BUCKET.into(),
        json!({
            "Type": "AWS::S3::Bucket",
            "Condition": "CreateBucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true,
                    "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true,
                    "RestrictPublicBuckets": true
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": [{
                    "Id": "tidy",
                    "Status": "Enabled",
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}
                }]},
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
    resources.insert(
        "DeadLetterQueue".into(),
        json!({
            "Type": "AWS::SQS::Queue",
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
    // Both functions: the secret, and each spec's staging variable pointed at the bucket.
    let mut env = Map::new();
    env.insert(crate::aws::lambda::SECRETS_VAR.into(), r(SECRET_PARAMETER));
    for var in plan.staging_vars() {
        env.insert(var.into(), sub_bucket("s3://${Bucket}/${StagingPrefix}"));
    }
    function(
        &mut resources,
        &EXTRACT,
        plan.extract_in_vpc(),
        "ExtractTimeout",
        "sluice extract: API to S3 staging, then the run's manifest",
        &env,
    );
    function(
        &mut resources,
        &LOAD,
        true,
        "LoadTimeout",
        "sluice load: a staged run into the warehouse, when its manifest lands",
        &env,
    );
    for d in &plan.pipelines {
        pipeline(&mut resources, d);
    }
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("sluice pipelines {} on AWS Lambda: extract on a schedule, S3 staging, load when a run's manifest lands (written by sluice deploy aws)", names.join(", ")),
        "Parameters": {
            "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the package that `sluice package` wrote"},
            "CodeKey": {"Type": "String", "Default": "sluice-lambda.zip", "Description": "Key of the package in CodeBucket"},
            SECRET_PARAMETER: {
                "Type": "String",
                "AllowedPattern": "^arn:aws[a-z-]*:secretsmanager:.+",
                "Description": format!(
                    "ARN of the Secrets Manager secret whose SecretString is a JSON object of the variables the specs read: {}{}",
                    if required.is_empty() { "none required".to_string() } else { format!("{required} (required)") },
                    if optional.is_empty() { String::new() } else { format!("; {optional} (optional, else the spec's default)") }
                )
            },
            "ExistingBucket": {"Type": "String", "Default": "", "Description": "Stage in this existing bucket instead of creating one (it must send events to EventBridge)"},
            "StagingPrefix": {"Type": "String", "Default": super::DEFAULT_PREFIX, "AllowedPattern": "^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", "Description": "Key prefix of the staged runs in the bucket"},
            "SubnetIds": {"Type": "CommaDelimitedList", "Default": "", "Description": "Subnets for the functions that reach the database (RDS), when it is in a VPC"},
            "SecurityGroupIds": {"Type": "CommaDelimitedList", "Default": "", "Description": "Security groups for those functions (allowed into the database's security group)"},
            "Architecture": {"Type": "String", "Default": "x86_64", "AllowedValues": ["x86_64", "arm64"], "Description": "The bootstrap's architecture (sluice package prints it)"},
            "MemorySize": {"Type": "Number", "Default": 1024, "MinValue": 128, "MaxValue": 10240},
            "ExtractTimeout": {"Type": "Number", "Default": 900, "MinValue": 10, "MaxValue": 900},
            "LoadTimeout": {"Type": "Number", "Default": 900, "MinValue": 10, "MaxValue": 900},
            "AlarmTopicArn": {"Type": "String", "Default": "", "Description": "SNS topic the error alarms notify (none when empty)"}
        },
        "Conditions": {
            "CreateBucket": {"Fn::Equals": [r("ExistingBucket"), ""]},
            "InVpc": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", r("SubnetIds")]}, ""]}]},
            "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [r("AlarmTopicArn"), ""]}]}
        },
        "Resources": resources,
        "Outputs": {
            "StagingLocation": {"Value": sub_bucket("s3://${Bucket}/${StagingPrefix}")},
            "ExtractFunctionName": {"Value": r(EXTRACT.logical_id)},
            "LoadFunctionName": {"Value": r(LOAD.logical_id)},
            "DeadLetterQueueUrl": {"Value": r("DeadLetterQueue")}
        }
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
