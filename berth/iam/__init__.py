"""Identity: principals, access keys, tokens, the policy language and its evaluation."""
