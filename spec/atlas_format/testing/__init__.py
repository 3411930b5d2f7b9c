"""atlas_format.testing: the conformance kit that other implementations run.

* ``strategies``: Hypothesis strategies for examples, layouts and writer configurations;
* ``equality``: the type-exact equality used to compare what was written and read back;
* ``kit``: base test classes (reader, writer, validator) that a third party subclasses;
* ``vectors``: loading the language-neutral golden vectors;
* ``cli``: ``atlas-conformance``, which runs the golden vectors against an implementation.

Importing this package needs ``hypothesis`` (the ``test`` extra). Nothing here imports
torch unless a strategy asks for tensors.
"""
