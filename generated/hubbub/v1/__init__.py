"""Generated Hubbub protocol stubs (package hubbub.v1); made by `make proto`."""
