from sqlalchemy import MetaData, create_engine
from sqlalchemy.orm import sessionmaker

engine = create_engine("sqlite:///./clubs_dev.db")
SessionLocal = sessionmaker(bind=engine)
shared_metadata = MetaData()  # "the shared metadata": nothing ever registered a table on it
