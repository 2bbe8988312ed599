"""AWS specifics: the credential chain, the SigV4 signer, and redaction of what must not be
logged."""
