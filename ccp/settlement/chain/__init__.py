"""On-chain settlement: the FundLock contract, its build artifacts and the code that compiles and loads them."""
