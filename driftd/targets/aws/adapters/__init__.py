"""One module per CloudFormation type; importing this package registers them all."""

import importlib

MODULES = ("autoscaling_group", "dynamodb_table", "ec2_network", "ec2_security_group", "ecr_repository", "iam_role",
           "iam_tables", "kms_secrets_alarms", "lambda_function", "logs_sns_sqs", "route53_record_set", "s3_bucket",
           "s3_bucket_policy", "ssm_parameter")

for _m in MODULES:
    importlib.import_module(f"{__name__}.{_m}")
