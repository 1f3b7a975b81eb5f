from streams.archive.app import app

app.main()
