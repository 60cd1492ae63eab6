"""Deploy a template `sluice deploy aws` wrote into moto's CloudFormation, the way an AWS
data engineer would, and hand back what each Lambda function would run with.

    moto_stack.py ENDPOINT TEMPLATE ZIP SECRET_JSON [NEXT_ZIP]

Uploads ZIP as the package (under the key it is named by), creates the secret, creates the
stack with the parameters of docs/aws.md and waits for it; given NEXT_ZIP, uploads that package
too and updates the stack to its key, as docs/aws.md's update path does; then, for every function of the
stack: its environment as Lambda would set it and temporary credentials of its own role
(STS AssumeRole). moto keeps a stack's inline role policies as Python text; they are put
again as JSON so that its policy engine reads them. Last, IAM enforcement is turned on:
from then on every request is checked against the policies of the credentials it is
signed with. Prints one JSON object:
{"bucket": ..., "stack": {logical id: physical id}, "functions": {logical id:
{"env": {...}, "credentials": {...}, "role": ...}}, "adapted": [the statements changed
for moto]}.
"""

import datetime
import json
import os
import sys
import time
import urllib.request

import boto3

endpoint, template_path, zip_path, secret_json = sys.argv[1:5]
# A second package: the stack is updated to it (a new CodeKey) before the roles are read.
next_zip = sys.argv[5] if len(sys.argv) > 5 else None
session = boto3.session.Session(
    aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
)


def client(name):
    return session.client(name, endpoint_url=endpoint)


s3, cfn, iam, sts, lam, sm = (
    client(n) for n in ["s3", "cloudformation", "iam", "sts", "lambda", "secretsmanager"]
)

s3.create_bucket(Bucket="artifacts")
code_key = "sluice/" + os.path.basename(zip_path)
with open(zip_path, "rb") as f:
    s3.put_object(Bucket="artifacts", Key=code_key, Body=f.read())
secret_arn = sm.create_secret(Name="sluice", SecretString=secret_json)["ARN"]

with open(template_path) as f:
    body = f.read()
params = {"CodeBucket": "artifacts", "CodeKey": code_key, "SecretArns": secret_arn}


def wait(status):
    for _ in range(300):
        now = cfn.describe_stacks(StackName="sluice")["Stacks"][0]["StackStatus"]
        if not now.endswith("IN_PROGRESS"):
            break
        time.sleep(0.2)
    if now != status:
        events = cfn.describe_stack_events(StackName="sluice")["StackEvents"]
        sys.exit(f"stack {now}: {json.dumps(events, default=str)[:3000]}")


def code_of_functions():
    out = {}
    for r in cfn.describe_stack_resources(StackName="sluice")["StackResources"]:
        if r.get("ResourceType") == "AWS::Lambda::Function":
            conf = lam.get_function_configuration(FunctionName=r["PhysicalResourceId"])
            out[r["LogicalResourceId"]] = [conf["CodeSha256"], conf.get("Description", "")]
    return out


def stack(call, done):
    call(
        StackName="sluice",
        TemplateBody=body,
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
    )
    wait(done)


stack(cfn.create_stack, "CREATE_COMPLETE")

updated = {}
if next_zip:
    before = code_of_functions()
    next_key = "sluice/" + os.path.basename(next_zip)
    with open(next_zip, "rb") as f:
        s3.put_object(Bucket="artifacts", Key=next_key, Body=f.read())
    params["CodeKey"] = next_key
    stack(cfn.update_stack, "UPDATE_COMPLETE")
    after = code_of_functions()
    updated = {k: {"before": before[k], "after": after.get(k)} for k in before}

# moto lists the resources it has no model of (alarms, bucket policy) without ids.
resources = [
    r
    for r in cfn.describe_stack_resources(StackName="sluice")["StackResources"]
    if r.get("LogicalResourceId")
]
physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in resources}

# Inline policies as JSON, for moto's policy engine.
adapted = []
for r in resources:
    if r["ResourceType"] != "AWS::IAM::Role":
        continue
    role = r["PhysicalResourceId"]
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except ValueError:
                # Python's repr of what its YAML reader made of the template, where
                # `Version: 2012-10-17` became a date.
                doc = eval(doc, {"__builtins__": {}, "datetime": datetime})
        # moto checks Secrets Manager actions but not their resources (it evaluates
        # every call against `*`), so a statement naming the secrets could never match:
        # there only, the resource becomes `*`. Said in the output.
        # An `Fn::If` on `AWS::NoValue` leaves nothing in a list in CloudFormation, a
        # null in moto.
        doc["Statement"] = [st for st in doc["Statement"] if st]
        for st in doc["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if all(a.startswith("secretsmanager:") for a in actions):
                adapted.append({"role": role, "sid": st.get("Sid"), "resource": st["Resource"]})
                st["Resource"] = "*"
        iam.put_role_policy(
            RoleName=role, PolicyName=name, PolicyDocument=json.dumps(doc, default=str)
        )

functions = {}
for r in resources:
    if r["ResourceType"] != "AWS::Lambda::Function":
        continue
    conf = lam.get_function_configuration(FunctionName=r["PhysicalResourceId"])
    creds = sts.assume_role(RoleArn=conf["Role"], RoleSessionName=r["LogicalResourceId"])[
        "Credentials"
    ]
    functions[r["LogicalResourceId"]] = {
        "name": conf["FunctionName"],
        "role": conf["Role"],
        "description": conf.get("Description", ""),
        "env": conf.get("Environment", {}).get("Variables", {}),
        "credentials": {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        },
    }

bucket = physical.get("StagingBucket")
req = urllib.request.Request(
    endpoint + "/moto-api/reset-auth",
    data=b"0",
    method="POST",
    headers={"Content-Type": "text/plain"},
)
urllib.request.urlopen(req).read()
print(
    json.dumps(
        {
            "bucket": bucket,
            "stack": physical,
            "functions": functions,
            "adapted": adapted,
            "updated": updated,
        },
        default=str,
    )
)
