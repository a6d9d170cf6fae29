"""``python -m krqa`` (used by ``accelerate launch -m krqa train …``)."""

from krqa.cli import main

main()
