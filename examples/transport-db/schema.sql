-- The tables the transport-db app reads and writes (MySQL/MariaDB and PostgreSQL alike),
-- with the data of Dantzig's transportation problem: the optimal plan costs 153.675 k$.
CREATE TABLE plants (name VARCHAR(64) PRIMARY KEY, supply DOUBLE PRECISION NOT NULL);
CREATE TABLE markets (name VARCHAR(64) PRIMARY KEY, demand DOUBLE PRECISION NOT NULL);
CREATE TABLE lanes (
    plant VARCHAR(64) NOT NULL,
    market VARCHAR(64) NOT NULL,
    unit_cost DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (plant, market)
);
CREATE TABLE shipments (
    plant VARCHAR(64) NOT NULL,
    market VARCHAR(64) NOT NULL,
    cases DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (plant, market)
);
CREATE TABLE plan_runs (planned_at VARCHAR(32) NOT NULL, status VARCHAR(64) NOT NULL, total_cost DOUBLE PRECISION);
INSERT INTO plants VALUES ('Seattle', 350), ('San-Diego', 600);
INSERT INTO markets VALUES ('New-York', 325), ('Chicago', 300), ('Topeka', 275);
INSERT INTO lanes VALUES
    ('Seattle', 'New-York', 0.225), ('Seattle', 'Chicago', 0.153), ('Seattle', 'Topeka', 0.162),
    ('San-Diego', 'New-York', 0.225), ('San-Diego', 'Chicago', 0.162), ('San-Diego', 'Topeka', 0.126);
