print("nexjobs")
