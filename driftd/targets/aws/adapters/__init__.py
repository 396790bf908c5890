"""One module per CloudFormation type; importing this package registers them all."""

import importlib

MODULES = ("autoscaling_group", "dynamodb_table", "ec2_security_group", "ecr_repository", "iam_role",
           "lambda_function", "route53_record_set", "s3_bucket", "s3_bucket_policy", "ssm_parameter")

for _m in MODULES:
    importlib.import_module(f"{__name__}.{_m}")
