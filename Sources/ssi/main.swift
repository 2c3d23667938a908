print("ssi")
