"""Small re-implementations of other libraries' init functions, for the recipe tests
(tests/test_recipes_libs.py) where the library itself cannot be imported here.  Each module
names the upstream file and the commit or release it was read from."""
