"""IAM and STS on the control-plane port: the AWS query protocol (form-encoded in, XML out)."""
