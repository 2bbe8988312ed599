"""What a run applies to each row: the ``Operation`` protocol and its implementations (Chime, a
generic REST template, any AWS operation from botocore's model)."""
